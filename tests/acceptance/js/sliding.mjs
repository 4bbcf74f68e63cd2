// Chat between two matrix-js-sdk clients that sync with the SDK's own SlidingSync class (Simplified
// Sliding Sync, MSC4186: POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync) instead
// of /v3/sync, wired in the way Element Web does it: `startClient({ slidingSync })`, which runs
// SlidingSyncSdk with its to_device/account_data/typing/receipts extensions.
//   node sliding.mjs BASE_URL REGISTRATION_TOKEN
//
// Besides the client's Room objects, every raw room payload of every response is recorded (the
// SlidingSync RoomData event, before the SDK's processing, which drops repeated event ids), so
// "exactly once" is checked on what the server sent, not on what the SDK kept.
import {
    assert,
    assertEqual,
    liveEvents,
    loginPassword,
    makeClient,
    parseArgs,
    registerUser,
    run,
    sdk,
    startAndWaitPrepared,
    step,
    waitFor,
    waitForEventId,
} from "./lib.mjs";

const { SlidingSync, SlidingSyncEvent, SlidingSyncState } = await import("matrix-js-sdk/lib/sliding-sync.js");

const { baseUrl, token } = parseArgs();
const suffix = `${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "js sliding acceptance password 1";
const N = 10; // messages each way, per phase
const LIST = "all";
// More than a burst (2N events) can pile up between two responses: no gap is expected. (Element Web
// asks for 1 in its list and relies on the open room's subscription; js-sdk 43 sends a subscription
// only once, and a Simplified Sliding Sync server applies it to that one request — see below.)
const LIST_TIMELINE_LIMIT = 50;
const SUB_TIMELINE_LIMIT = 50;
const FRESH_TIMELINE_LIMIT = 5; // the second device's list: a limited room with a prev_batch

// What the room list asks for of every room (the kind of state Element Web's room list needs).
const LIST_REQUIRED_STATE = [
    ["m.room.name", ""],
    ["m.room.avatar", ""],
    ["m.room.topic", ""],
    ["m.room.create", ""],
    ["m.room.encryption", ""],
    ["m.room.join_rules", ""],
    ["m.room.tombstone", ""],
    ["m.room.member", "$ME"],
    ["m.room.member", "$LAZY"],
];

/** A client syncing with SlidingSync: one list over all rooms, plus a recorder of the raw responses. */
function slidingClient(account, label, timelineLimit = LIST_TIMELINE_LIMIT) {
    const client = makeClient(baseUrl, account, label);
    const list = {
        ranges: [[0, 19]],
        timeline_limit: timelineLimit,
        required_state: LIST_REQUIRED_STATE,
        filters: {},
    };
    const roomSub = { timeline_limit: SUB_TIMELINE_LIMIT, required_state: [["*", "*"]] };
    const ss = new SlidingSync(baseUrl, new Map([[LIST, list]]), roomSub, client, 5000);
    const rec = {
        label,
        ss,
        responses: 0,
        errors: [],
        listCounts: [], // LIST's count of every response that had one
        rooms: new Map(), // room id -> [{ initial, limited, prevBatch, timeline: [event ids], invite, requiredState }]
    };
    // Registered before startClient: runs before SlidingSyncSdk's own listener mutates the payload.
    ss.on(SlidingSyncEvent.RoomData, (roomId, data) => {
        const entry = {
            initial: !!data.initial,
            limited: !!data.limited,
            prevBatch: data.prev_batch,
            timeline: (data.timeline ?? []).map((e) => e.event_id),
            invite: Array.isArray(data.invite_state) ? JSON.parse(JSON.stringify(data.invite_state)) : null,
            requiredState: (data.required_state ?? []).map((e) => [e.type, e.state_key]),
        };
        if (!rec.rooms.has(roomId)) rec.rooms.set(roomId, []);
        rec.rooms.get(roomId).push(entry);
    });
    ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (err) rec.errors.push(`${err.httpStatus ?? ""} ${err.errcode ?? ""} ${err.message ?? err}`);
        if (state === SlidingSyncState.RequestFinished && resp) {
            rec.responses++;
            if (resp.lists?.[LIST]) rec.listCounts.push(resp.lists[LIST].count);
        }
    });
    return { client, rec };
}

/** How often each event id came down in `roomId`'s raw timelines. */
function rawCounts(rec, roomId) {
    const counts = new Map();
    for (const entry of rec.rooms.get(roomId) ?? []) {
        for (const id of entry.timeline) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    return counts;
}

function rawOrder(rec, roomId) {
    return (rec.rooms.get(roomId) ?? []).flatMap((e) => e.timeline);
}

function lastListCount(rec) {
    return rec.listCounts.at(-1);
}

/** Every id of `ids` came down exactly once in `rec`'s raw timelines of the room, in this order. */
function assertRawExactlyOnce(rec, roomId, ids, what) {
    const counts = rawCounts(rec, roomId);
    const wrong = ids.filter((id) => counts.get(id) !== 1).map((id) => `${id}×${counts.get(id) ?? 0}`);
    assert(wrong.length === 0, `${what}: not exactly once in ${rec.label}'s sliding sync responses: ${wrong}`);
    const order = rawOrder(rec, roomId).filter((id) => ids.includes(id));
    assertEqual(order, ids, `${what}: order in ${rec.label}'s sliding sync responses`);
}

/** Every id of `ids` is in the client's live timeline exactly once, in this order. */
function assertTimelineExactlyOnce(client, label, roomId, ids, what) {
    const live = liveEvents(client, roomId).map((e) => e.getId());
    assert(new Set(live).size === live.length, `duplicate events in ${label}'s live timeline: ${live}`);
    assertEqual(
        live.filter((id) => ids.includes(id)),
        ids,
        `${what}: in ${label}'s live timeline`,
    );
}

async function main() {
    step("register two users through UIA with the registration token");
    const [accA, accB] = await Promise.all([
        registerUser(baseUrl, `ssalice${suffix}`, PASSWORD, token),
        registerUser(baseUrl, `ssbob${suffix}`, PASSWORD, token),
    ]);

    step("the server advertises org.matrix.simplified_msc3575");
    const probe = makeClient(baseUrl, accA, "probe");
    const versions = await probe.getVersions();
    assertEqual(versions.unstable_features?.["org.matrix.simplified_msc3575"], true, "unstable feature flag");

    step("start both clients with SlidingSync (startClient({ slidingSync })) and wait for PREPARED");
    const { client: a, rec: ra } = slidingClient(accA, "A");
    const { client: b, rec: rb } = slidingClient(accB, "B");
    await Promise.all([
        startAndWaitPrepared(a, { slidingSync: ra.ss }),
        startAndWaitPrepared(b, { slidingSync: rb.ss }),
    ]);
    assertEqual(lastListCount(ra), 0, "A's list count before any room");
    assertEqual(lastListCount(rb), 0, "B's list count before any room");
    assertEqual(a.getRooms().length, 0, "A's rooms before any room");

    step("A creates a room; it comes down A's list with its state");
    const { room_id: roomId } = await a.createRoom({
        name: "js sliding acceptance",
        topic: "matrix-js-sdk SlidingSync",
        preset: sdk.Preset.PublicChat, // unencrypted: this client has no crypto
        visibility: sdk.Visibility.Private,
    });
    await waitFor(() => a.getRoom(roomId)?.getMyMembership() === "join", "the new room at A");
    await waitFor(() => lastListCount(ra) === 1, "A's list count 1");
    assertEqual(a.getRoom(roomId).name, "js sliding acceptance", "room name at A");
    assertEqual(ra.ss.getListData(LIST)?.joinedCount, 1, "SlidingSync.getListData count at A");
    const firstA = ra.rooms.get(roomId)[0];
    assert(firstA.initial, `A's first payload of the room is not initial: ${JSON.stringify(firstA)}`);
    assert(
        firstA.requiredState.some(([t, k]) => t === "m.room.member" && k === accA.userId),
        `required_state $ME at A: ${JSON.stringify(firstA.requiredState)}`,
    );
    assert(
        firstA.requiredState.some(([t]) => t === "m.room.create"),
        `required_state m.room.create at A: ${JSON.stringify(firstA.requiredState)}`,
    );

    // js-sdk 43 sends room_subscriptions in ONE request (then only unsubscribe_rooms when it drops
    // one): the MSC3575 proxy kept them, MSC4186 servers (Synapse, Paigham) apply them to that request
    // only. What holds either way: the subscription's extra state arrives.
    step("A opens the room: a room subscription (timeline_limit 50, all state)");
    ra.ss.modifyRoomSubscriptions(new Set([roomId]));
    await waitFor(
        () => a.getRoom(roomId)?.currentState.getStateEvents("m.room.power_levels", ""),
        "power levels at A (only the subscription asks for them)",
    );

    step("A invites B; B sees the invite (invite_state) through sliding sync");
    await a.invite(roomId, accB.userId);
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "invite", "invite at B");
    await waitFor(() => lastListCount(rb) === 1, "B's list count 1 (the invite)");
    const invited = b.getRoom(roomId);
    assertEqual(invited.name, "js sliding acceptance", "room name from invite_state");
    assertEqual(invited.getMember(accB.userId)?.events?.member?.getSender(), accA.userId, "inviter");
    const invitePayload = rb.rooms.get(roomId).find((e) => e.invite);
    assert(invitePayload, "no invite_state payload at B");
    assert(invitePayload.timeline.length === 0, `an invite carries no timeline: ${invitePayload.timeline}`);
    const myInvite = invitePayload.invite.find((e) => e.type === "m.room.member" && e.state_key === accB.userId);
    assertEqual(myInvite?.content?.membership, "invite", "B's own invite in invite_state");

    step("B joins and opens the room; both see the join");
    await b.joinRoom(roomId);
    rb.ss.modifyRoomSubscriptions(new Set([roomId]));
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "join", "B joined (own view)");
    await waitFor(() => a.getRoom(roomId)?.getMember(accB.userId)?.membership === "join", "B's join at A");
    await waitFor(
        () => b.getRoom(roomId)?.currentState.getStateEvents("m.room.power_levels", ""),
        "power levels at B (the subscription)",
    );
    await waitFor(() => b.getRoom(roomId)?.getMember(accA.userId)?.membership === "join", "A's membership at B");
    assertEqual(lastListCount(rb), 1, "B's list count after the join");
    assertEqual(lastListCount(ra), 1, "A's list count after B's join");
    assert(!a.getRoom(roomId).hasEncryptionStateEvent(), "plain-chat room must not be encrypted");

    const fromA = [];
    const fromB = [];
    const all = [];
    const send = async (client, who, body) => {
        const { event_id } = await client.sendMessage(roomId, { msgtype: "m.text", body });
        (who === "A" ? fromA : fromB).push(event_id);
        all.push(event_id);
        return event_id;
    };

    step(`ping-pong: ${N} messages each way, each waited for at the other side`);
    for (let i = 0; i < N; i++) {
        const pa = await send(a, "A", `ping ${i}`);
        await waitForEventId(b, roomId, pa, `ping ${i} at B`);
        const pb = await send(b, "B", `pong ${i}`);
        await waitForEventId(a, roomId, pb, `pong ${i} at A`);
    }
    const pingPong = [...all];

    step(`bursts: ${N} messages each way at the same time`);
    const burst = async (client, who) => {
        for (let i = 0; i < N; i++) await send(client, who, `burst ${who} ${i}`);
    };
    await Promise.all([burst(a, "A"), burst(b, "B")]);
    for (const [label, c] of [
        ["A", a],
        ["B", b],
    ]) {
        await waitForEventId(c, roomId, fromA.at(-1), `A's last burst message at ${label}`);
        await waitForEventId(c, roomId, fromB.at(-1), `B's last burst message at ${label}`);
    }

    step("every message arrived exactly once on both sides, in order");
    // the Room objects: each sender's messages in send order, each once, on both sides
    for (const [label, c] of [
        ["A", a],
        ["B", b],
    ]) {
        assertTimelineExactlyOnce(c, label, roomId, fromA, "A's messages");
        assertTimelineExactlyOnce(c, label, roomId, fromB, "B's messages");
        assertTimelineExactlyOnce(c, label, roomId, pingPong, "the ping-pong");
        const bodies = liveEvents(c, roomId)
            .filter((e) => fromA.includes(e.getId()))
            .map((e) => e.getContent().body);
        assertEqual(bodies.slice(0, N), [...Array(N).keys()].map((i) => `ping ${i}`), `A's ping bodies at ${label}`);
    }
    // both sides hold the messages in one and the same order (the server's)
    const orderAt = (c) =>
        liveEvents(c, roomId)
            .map((e) => e.getId())
            .filter((id) => all.includes(id));
    assertEqual(orderAt(a), orderAt(b), "A and B see the messages in the same order");
    assertEqual(orderAt(a).length, 4 * N, "all messages in the timelines");
    // what the server sent: each message once in the raw responses, in the room's order, no gap
    for (const rec of [ra, rb]) {
        assertRawExactlyOnce(rec, roomId, orderAt(a), "every message");
        const gaps = (rec.rooms.get(roomId) ?? []).filter(
            (e) => e.limited && e.timeline.some((id) => all.includes(id)),
        );
        assertEqual(gaps.length, 0, `limited payloads carrying messages at ${rec.label} (timeline_limit 50)`);
    }

    step("the room list counts: a second room of A's alone is 2 at A, still 1 at B");
    const { room_id: soloRoom } = await a.createRoom({ name: "A alone", preset: sdk.Preset.PublicChat });
    await waitFor(() => a.getRoom(soloRoom)?.getMyMembership() === "join", "second room at A");
    await waitFor(() => lastListCount(ra) === 2, "A's list count 2");
    assertEqual(ra.ss.getListData(LIST)?.joinedCount, 2, "SlidingSync.getListData count at A");
    const { event_id: lastA } = await a.sendMessage(roomId, { msgtype: "m.text", body: "after the second room" });
    await waitForEventId(b, roomId, lastA, "a message after A's second room, at B");
    assertEqual(lastListCount(rb), 1, "B's list count (B is not in A's second room)");
    assert(!b.getRoom(soloRoom), "A's second room leaked to B");
    assertEqual(
        b.getRooms().map((r) => r.roomId),
        [roomId],
        "B's rooms",
    );
    assertRawExactlyOnce(rb, roomId, [...orderAt(a), lastA], "every message (after the list changed)");

    step("receipts and typing come through the extensions");
    const lastEv = b.getRoom(roomId).findEventById(lastA);
    await b.sendReadReceipt(lastEv);
    await waitFor(
        () => a.getRoom(roomId)?.getReadReceiptForUserId(accB.userId, true)?.eventId === lastA,
        "B's m.read receipt at A (receipts extension)",
    );
    await a.sendTyping(roomId, true, 30000);
    await waitFor(() => b.getRoom(roomId)?.getMember(accA.userId)?.typing === true, "A typing at B (typing extension)");
    await a.sendTyping(roomId, false);
    await waitFor(() => b.getRoom(roomId)?.getMember(accA.userId)?.typing === false, "A stopped typing at B");

    step(`B's second device: a fresh connection, list timeline_limit ${FRESH_TIMELINE_LIMIT}, then scrollback`);
    const accB2 = await loginPassword(baseUrl, accB.userId, PASSWORD, "js sliding B2");
    const { client: b2, rec: rb2 } = slidingClient(accB2, "B2", FRESH_TIMELINE_LIMIT);
    await startAndWaitPrepared(b2, { slidingSync: rb2.ss });
    await waitFor(() => b2.getRoom(roomId)?.getMyMembership() === "join", "the room at B2");
    assertEqual(lastListCount(rb2), 1, "B2's list count");
    const history = [...orderAt(a), lastA];
    const first = rb2.rooms.get(roomId)[0];
    assert(first.initial && first.limited && first.prevBatch, `B2's first payload: ${JSON.stringify(first)}`);
    assertEqual(first.timeline, history.slice(-FRESH_TIMELINE_LIMIT), "B2's first timeline: the latest events");
    // the prev_batch leads /messages to the events right before that timeline
    const before = await b2.createMessagesRequest(roomId, first.prevBatch, 3, sdk.Direction.Backward);
    const expectBefore = history.slice(-FRESH_TIMELINE_LIMIT - 3, -FRESH_TIMELINE_LIMIT).reverse();
    assertEqual(
        before.chunk.map((e) => e.event_id),
        expectBefore,
        "GET /messages?dir=b from the sliding sync prev_batch",
    );
    const room2 = b2.getRoom(roomId);
    let rounds = 0;
    while (room2.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS) !== null && rounds < 20) {
        await b2.scrollback(room2, 10); // GET /messages from the sliding sync prev_batch
        rounds++;
    }
    assert(rounds < 20, "scrollback never reached the start of the room");
    assertEqual(liveEvents(b2, roomId)[0].getType(), "m.room.create", "oldest event after scrollback at B2");
    assertTimelineExactlyOnce(b2, "B2", roomId, history, "every message after scrollback");
    const { event_id: toB2 } = await a.sendMessage(roomId, { msgtype: "m.text", body: "to both of B's devices" });
    await waitForEventId(b2, roomId, toB2, "a live message at B2");
    await waitForEventId(b, roomId, toB2, "a live message at B");
    assertRawExactlyOnce(rb2, roomId, history.slice(-FRESH_TIMELINE_LIMIT).concat(toB2), "B2's synced messages");
    assertRawExactlyOnce(rb, roomId, history.concat(toB2), "every message at B (a second device changed nothing)");
    assertTimelineExactlyOnce(b2, "B2", roomId, history.concat(toB2), "every message at B2");

    step("no event of the room came twice on any connection; no sliding sync errors");
    for (const rec of [ra, rb, rb2]) {
        const twice = [...rawCounts(rec, roomId)].filter(([, n]) => n !== 1);
        assertEqual(twice, [], `events sent more than once to ${rec.label}`);
    }
    assertEqual(rb2.errors, [], "B2's sliding sync errors");
    assertEqual(ra.errors, [], "A's sliding sync errors");
    assertEqual(rb.errors, [], "B's sliding sync errors");
    console.log(`responses: A ${ra.responses}, B ${rb.responses}`);
}

run(main);
