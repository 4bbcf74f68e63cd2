// Delayed events (MSC4140) with matrix-js-sdk's own calls, as its MatrixRTC MembershipManager (Element
// Call) uses them: a delayed "hangup" call-membership state event kept alive by restarts
// (_unstable_restartScheduledDelayedEvent, the path form), which the server sends once they stop; a
// delayed message sent at once (_unstable_sendScheduledDelayedEvent); the deprecated body form
// (_unstable_updateDelayedEvent: first without a token, then signed in on M_MISSING_TOKEN); the
// listings; M_NOT_FOUND for a finalised one; and the max-delay error the MembershipManager reads.
//   node delayed.mjs BASE_URL REGISTRATION_TOKEN
import { assert, assertEqual, makeClient, parseArgs, registerUser, run, startAndWaitPrepared, step, waitFor } from "./lib.mjs";

const { baseUrl, token } = parseArgs();
const suffix = `${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "js delayed acceptance password 1";
const MEMBER = "org.matrix.msc3401.call.member";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stateContent(client, roomId, key) {
    const ev = client.getRoom(roomId)?.currentState.getStateEvents(MEMBER, key);
    return ev ? ev.getContent() : undefined;
}

async function main() {
    step("register A, start the client; the server advertises org.matrix.msc4140");
    const acc = await registerUser(baseUrl, `jsdelay${suffix}`, PASSWORD, token);
    const a = makeClient(baseUrl, acc, "A");
    await startAndWaitPrepared(a);
    assert(await a.doesServerSupportUnstableFeature("org.matrix.msc4140"), "org.matrix.msc4140 in /versions");
    const { room_id: roomId } = await a.createRoom({ preset: "public_chat" });
    const key = `_${acc.userId}_${acc.deviceId}_m.call`;

    step("schedule the hangup (delayed state, 1.5 s), then join the call");
    const { delay_id: hangup } = await a._unstable_sendDelayedStateEvent(roomId, { delay: 1500 }, MEMBER, {}, key);
    assert(typeof hangup === "string" && hangup.length >= 16, `delay_id ${hangup}`);
    await a.sendStateEvent(roomId, MEMBER, { application: "m.call", call_id: "", device_id: acc.deviceId }, key);
    await waitFor(() => stateContent(a, roomId, key)?.application === "m.call", "the call membership");

    step("the listings: scheduled, and the single lookup");
    const listed = await a._unstable_getDelayedEvents();
    assertEqual(listed.scheduled.map((d) => [d.delay_id, d.type, d.state_key, d.delay]),
        [[hangup, MEMBER, key, 1500]], "getDelayedEvents().scheduled");
    assertEqual((await a._unstable_getDelayedEvent(hangup)).delay_id, hangup, "getDelayedEvent");

    step("heartbeats for 3 s (twice the delay): still in the call");
    for (let i = 0; i < 6; i++) {
        await sleep(500);
        await a._unstable_restartScheduledDelayedEvent(hangup);
    }
    assertEqual(stateContent(a, roomId, key)?.application, "m.call", "still a member while restarted");

    step("the heartbeats stop: the server sends the hangup");
    await waitFor(() => stateContent(a, roomId, key) && Object.keys(stateContent(a, roomId, key)).length === 0,
        "the hangup state event", 15000);
    const fin = await a._unstable_getDelayedEvents("finalised", hangup);
    assertEqual(fin.finalised.map((f) => [f.delayed_event.delay_id, f.outcome, f.reason]),
        [[hangup, "send", "delay"]], "finalised");
    let err = await a._unstable_restartScheduledDelayedEvent(hangup).then(() => null, (e) => e);
    assertEqual(err?.errcode, "M_NOT_FOUND", "restart after it was sent (the SDK then schedules a new one)");

    step("a delayed message sent at once; another cancelled through the deprecated body form");
    const { delay_id: msg } = await a._unstable_sendDelayedEvent(roomId, { delay: 600000 }, null,
        "m.room.message", { msgtype: "m.text", body: "sent at once" });
    await a._unstable_sendScheduledDelayedEvent(msg);
    await waitFor(() => a.getRoom(roomId).getLiveTimeline().getEvents()
        .some((e) => e.getContent().body === "sent at once"), "the message sent by the send action");
    const { delay_id: other } = await a._unstable_sendDelayedEvent(roomId, { delay: 600000 }, null,
        "m.room.message", { msgtype: "m.text", body: "never" });
    await a._unstable_updateDelayedEvent(other, "cancel");
    await a._unstable_cancelScheduledDelayedEvent(other); // a retried cancel succeeds
    assertEqual((await a._unstable_getDelayedEvents("scheduled")).scheduled, [], "nothing left scheduled");

    step("a delay beyond the maximum: the error the MembershipManager retries with");
    err = await a._unstable_sendDelayedStateEvent(roomId, { delay: 90000000 }, MEMBER, {}, key).then(() => null, (e) => e);
    assertEqual([err?.httpStatus, err?.errcode, err?.data?.["org.matrix.msc4140.errcode"]],
        [400, "M_UNKNOWN", "M_MAX_DELAY_EXCEEDED"], "max delay exceeded");
    assertEqual(err.data["org.matrix.msc4140.max_delay"], 86400000, "the maximum in the error");
    a.stopClient();
}

run(main);
