// Plain chat between two matrix-js-sdk clients (configured like Element Web) against a real server.
//   node chat.mjs BASE_URL REGISTRATION_TOKEN
import {
    assert,
    assertEqual,
    liveEvents,
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

const { baseUrl, token } = parseArgs();
const suffix = `${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "js chat acceptance password 1";

async function main() {
    step("register two users through UIA with the registration token");
    const [accA, accB] = await Promise.all([
        registerUser(baseUrl, `jsalice${suffix}`, PASSWORD, token),
        registerUser(baseUrl, `jsbob${suffix}`, PASSWORD, token),
    ]);
    assert(accA.userId.startsWith(`@jsalice${suffix}:`), `user id ${accA.userId}`);

    step("start both clients (lazyLoadMembers) and wait for the initial sync");
    const a = makeClient(baseUrl, accA, "A");
    const b = makeClient(baseUrl, accB, "B");
    await Promise.all([startAndWaitPrepared(a), startAndWaitPrepared(b)]);

    step("A creates a room and invites B");
    // public_chat preset: servers (Paigham by default) make private_chat rooms encrypted, and this
    // client has no crypto; unlisted (visibility private), and B is still invited explicitly
    const { room_id: roomId } = await a.createRoom({
        name: "js acceptance",
        topic: "matrix-js-sdk",
        preset: sdk.Preset.PublicChat,
        visibility: sdk.Visibility.Private,
    });
    assert(roomId.startsWith("!"), `room id ${roomId}`);
    await a.invite(roomId, accB.userId);

    step("B sees the invite via the sync loop and joins");
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "invite", "invite at B");
    const invitedRoom = b.getRoom(roomId);
    assertEqual(invitedRoom.name, "js acceptance", "room name from the invite's stripped state");
    assertEqual(invitedRoom.getMember(accB.userId)?.events?.member?.getSender(), accA.userId, "inviter");
    await b.joinRoom(roomId);
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "join", "B joined (own view)");
    await waitFor(() => a.getRoom(roomId)?.getMember(accB.userId)?.membership === "join", "B's join at A");
    assert(!a.getRoom(roomId).hasEncryptionStateEvent(), "plain-chat room must not be encrypted");

    step("exchange messages; each side sees the other's in order");
    const { event_id: m1 } = await a.sendMessage(roomId, { msgtype: "m.text", body: "hello from js A" });
    await waitForEventId(b, roomId, m1, "m1 at B");
    const { event_id: m2 } = await b.sendMessage(roomId, { msgtype: "m.text", body: "hello from js B" });
    const { event_id: m3 } = await a.sendMessage(roomId, { msgtype: "m.text", body: "third" });
    for (const [name, c] of [
        ["A", a],
        ["B", b],
    ]) {
        await waitForEventId(c, roomId, m3, `m3 at ${name}`);
        await waitForEventId(c, roomId, m2, `m2 at ${name}`);
        const ids = liveEvents(c, roomId).map((e) => e.getId());
        assert(new Set(ids).size === ids.length, `duplicate events in ${name}'s live timeline: ${ids}`);
        const i1 = ids.indexOf(m1);
        const i2 = ids.indexOf(m2);
        const i3 = ids.indexOf(m3);
        assert(i1 >= 0 && i1 < i2 && i2 < i3, `order at ${name}: ${ids}`);
        const ev2 = liveEvents(c, roomId)[i2];
        assertEqual(ev2.getContent().body, "hello from js B", "m2 body");
        assertEqual(ev2.getSender(), accB.userId, "m2 sender");
    }

    step("A sends 30 messages");
    const sent = [];
    for (let i = 0; i < 30; i++) {
        const { event_id } = await a.sendMessage(roomId, { msgtype: "m.text", body: `history ${String(i).padStart(2, "0")}` });
        sent.push(event_id);
    }
    await waitForEventId(b, roomId, sent[29], "last history message at B");
    b.stopClient();

    step("jump to an event (GET /context) and paginate forwards from there in pages of 10");
    // on yet another fresh client, where history 05 is not loaded: Element's permalink path
    const b3 = makeClient(baseUrl, accB, "B''");
    await startAndWaitPrepared(b3, { initialSyncLimit: 5 });
    await waitFor(() => b3.getRoom(roomId), "room at B''");
    const timelineSet = b3.getRoom(roomId).getUnfilteredTimelineSet();
    assert(!timelineSet.getTimelineForEvent(sent[5]), "history 05 unexpectedly already loaded");
    const tl = await b3.getEventTimeline(timelineSet, sent[5]);
    assert(tl, "getEventTimeline returned nothing");
    assert(
        tl.getEvents().some((e) => e.getId() === sent[5]),
        "context timeline does not contain the target event",
    );
    // forward pagination stops where it meets the live timeline (the SDK links the two), so
    // read the chain of linked timelines
    const chainIds = () => {
        const ids = [];
        for (let t = tl; t; t = t.getNeighbouringTimeline(sdk.EventTimeline.FORWARDS)) {
            ids.push(...t.getEvents().map((e) => e.getId()));
        }
        return ids;
    };
    let fwdRounds = 0;
    while (!chainIds().includes(sent[29]) && fwdRounds < 10) {
        const more = await b3.paginateEventTimeline(tl, { backwards: false, limit: 10 });
        fwdRounds++;
        if (!more) break;
    }
    const ctxIds = chainIds();
    assert(new Set(ctxIds).size === ctxIds.length, `duplicates in the context timeline: ${ctxIds}`);
    assertEqual(
        ctxIds.filter((id) => sent.includes(id)),
        sent.slice(5),
        "history 05..29 after /context + forward pagination",
    );
    b3.stopClient();

    step("a fresh B client (initialSyncLimit 5) scrolls back through the whole history");
    const b2 = makeClient(baseUrl, accB, "B'");
    await startAndWaitPrepared(b2, { initialSyncLimit: 5 });
    await waitFor(() => b2.getRoom(roomId), "room at fresh B");
    const room = b2.getRoom(roomId);
    const initialCount = liveEvents(b2, roomId).length;
    assert(initialCount <= 5 + 1, `initialSyncLimit 5 but got ${initialCount} events`);
    let rounds = 0;
    while (room.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS) !== null && rounds < 20) {
        await b2.scrollback(room, 10);
        rounds++;
    }
    assert(rounds < 20, "scrollback never reached the start of the room");
    const all = liveEvents(b2, roomId);
    const allIds = all.map((e) => e.getId());
    assert(new Set(allIds).size === allIds.length, `duplicates after scrollback: ${allIds}`);
    assertEqual(all[0].getType(), "m.room.create", "oldest event after full scrollback");
    const historyIds = allIds.filter((id) => sent.includes(id));
    assertEqual(historyIds, sent, "the 30 history messages, in order, after scrollback");
    const pos = (id) => allIds.indexOf(id);
    assert(pos(m1) < pos(m2) && pos(m2) < pos(m3) && pos(m3) < pos(sent[0]), "older conversation order");
    assertEqual(
        all.filter((e) => sent.includes(e.getId())).map((e) => e.getContent().body),
        sent.map((_, i) => `history ${String(i).padStart(2, "0")}`),
        "history bodies",
    );

    step("B marks A's last message read (read markers, as Element); A sees the receipt");
    const lastEv = room.findEventById(sent[29]);
    assert(lastEv, "last event at fresh B");
    await b2.setRoomReadMarkers(roomId, sent[29], lastEv);
    await waitFor(
        () => a.getRoom(roomId)?.getReadReceiptForUserId(accB.userId, true)?.eventId === sent[29],
        "B's m.read receipt at A",
    );
    await waitFor(
        () => b2.getRoom(roomId)?.getAccountData("m.fully_read")?.getContent()?.event_id === sent[29],
        "m.fully_read room account data at B",
    );

    step("typing notifications");
    await a.sendTyping(roomId, true, 30000);
    await waitFor(() => b2.getRoom(roomId)?.getMember(accA.userId)?.typing === true, "A typing at B");
    await a.sendTyping(roomId, false);
    await waitFor(() => b2.getRoom(roomId)?.getMember(accA.userId)?.typing === false, "A stopped typing at B");

    step("display name change is visible to the other member");
    await a.setDisplayName("JS Alice");
    const profile = await b2.getProfileInfo(accA.userId);
    assertEqual(profile.displayname, "JS Alice", "profile displayname");
    await waitFor(() => b2.getRoom(roomId)?.getMember(accA.userId)?.name === "JS Alice", "A's new name at B");

    step("errors: B cannot send to a room it is not in (M_FORBIDDEN)");
    const { room_id: privateRoom } = await a.createRoom({ name: "A only", preset: sdk.Preset.PrivateChat });
    let err;
    try {
        await b2.sendEvent(privateRoom, "m.room.message", { msgtype: "m.text", body: "nope" });
    } catch (e) {
        err = e;
    }
    assert(err, "sending to a room B is not in succeeded");
    assertEqual(err.errcode ?? err.data?.errcode, "M_FORBIDDEN", `errcode (http ${err.httpStatus})`);
    assertEqual(err.httpStatus, 403, "http status");

    step("B leaves; A sees the leave");
    await b2.leave(roomId);
    await waitFor(() => a.getRoom(roomId)?.getMember(accB.userId)?.membership === "leave", "B's leave at A");
    await waitFor(() => b2.getRoom(roomId)?.getMyMembership() === "leave", "B's own view of the leave");
}

run(main);
