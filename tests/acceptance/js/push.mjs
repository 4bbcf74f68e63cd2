// Push notifications with matrix-js-sdk: B registers a pusher (client.setPusher, as a mobile client
// on this SDK does; Element Web's Settings → Sessions lists them with client.getPushers), A invites B
// and sends a message. The gateway is the pytest side's ntfy-like stand-in: it checks what arrived.
//   node push.mjs BASE_URL REGISTRATION_TOKEN GATEWAY_NOTIFY_URL PUSHKEY
// Prints "PUSH_ROOM: <room id>" and "PUSH_EVENT: <event id>" for the Python side.
import {
    assert,
    assertEqual,
    makeClient,
    registerUser,
    run,
    sdk,
    startAndWaitPrepared,
    step,
    waitFor,
} from "./lib.mjs";

const baseUrl = (process.argv[2] || "").replace(/\/+$/, "");
const token = process.argv[3] || "";
const gatewayUrl = process.argv[4] || "";
const pushkey = process.argv[5] || "";
if (!baseUrl || !token || !gatewayUrl || !pushkey) {
    console.error("usage: node push.mjs BASE_URL REGISTRATION_TOKEN GATEWAY_NOTIFY_URL PUSHKEY");
    process.exit(64);
}
const suffix = `${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "js push acceptance password 1";
const APP_ID = "io.element.android";

function pusherFor(key) {
    return {
        kind: "http",
        app_id: APP_ID,
        pushkey: key,
        app_display_name: "Element X",
        device_display_name: "js phone",
        lang: "en",
        data: { url: gatewayUrl, format: "event_id_only" },
    };
}

/** The spec fields of a pusher as GET /pushers gave it (getPushers adds `enabled`, see below),
 * with the keys of every object sorted: the JSON key order is not part of the answer. */
function specFields(p) {
    const { kind, app_id, pushkey: key, app_display_name, device_display_name, lang, data } = p;
    return sortedKeys({ kind, app_id, pushkey: key, app_display_name, device_display_name, lang, data });
}

function sortedKeys(v) {
    if (Array.isArray(v)) return v.map(sortedKeys);
    if (v === null || typeof v !== "object") return v;
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedKeys(v[k])]));
}

async function main() {
    step("register A and B, start both clients");
    const [accA, accB] = await Promise.all([
        registerUser(baseUrl, `jspusha${suffix}`, PASSWORD, token),
        registerUser(baseUrl, `jspushb${suffix}`, PASSWORD, token),
    ]);
    const a = makeClient(baseUrl, accA, "A");
    const b = makeClient(baseUrl, accB, "B");
    await Promise.all([startAndWaitPrepared(a), startAndWaitPrepared(b)]);

    step("B registers a pusher with client.setPusher; client.getPushers lists it");
    assertEqual((await b.getPushers()).pushers, [], "no pushers before");
    await b.setPusher(pusherFor(pushkey));
    let { pushers } = await b.getPushers();
    assertEqual(pushers.map(specFields), [specFields(pusherFor(pushkey))], "GET /pushers after setPusher");
    // Without MSC3881 (remote toggling) on the server the SDK marks every pusher enabled, which is
    // what Element Web's session manager reads.
    assertEqual(pushers[0]["org.matrix.msc3881.enabled"], true, "getPushers' MSC3881 migration: enabled");

    step("a second pusher with append: true, then client.removePusher (kind: null) removes only it");
    const second = `${pushkey.split("?")[0]}x2?up=1`;
    await b.setPusher({ ...pusherFor(second), append: true });
    ({ pushers } = await b.getPushers());
    assertEqual(pushers.map((p) => p.pushkey).sort(), [pushkey, second].sort(), "both pushers listed");
    await b.removePusher(second, APP_ID);
    ({ pushers } = await b.getPushers());
    assertEqual(pushers.map((p) => p.pushkey), [pushkey], "only the first pusher left");

    step("a pusher for a gateway outside the server's allowlist is refused");
    const outside = {
        ...pusherFor("https://push.example.com/up1?up=1"),
        data: { url: "https://push.example.com/_matrix/push/v1/notify" },
    };
    const refused = await b.setPusher(outside).then(
        () => null,
        (err) => err,
    );
    assert(refused, "setPusher to a gateway outside the allowlist should fail");
    assertEqual([refused.httpStatus, refused.errcode], [403, "M_FORBIDDEN"], "refusal");

    step("A creates a room and invites B (the invite rings B's pusher); B joins");
    const { room_id: roomId } = await a.createRoom({
        name: "js push",
        preset: sdk.Preset.PublicChat, // no crypto in this client: private_chat rooms are encrypted
        visibility: sdk.Visibility.Private,
    });
    await a.invite(roomId, accB.userId);
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "invite", "invite at B");
    await b.joinRoom(roomId);
    await waitFor(() => a.getRoom(roomId)?.getMember(accB.userId)?.membership === "join", "B's join at A");

    step("A sends a message; B's client gets it through sync");
    const { event_id: eventId } = await a.sendMessage(roomId, { msgtype: "m.text", body: "ring ring from js A" });
    await waitFor(
        () => b.getRoom(roomId)?.getLiveTimeline().getEvents().some((e) => e.getId() === eventId),
        "A's message at B",
    );
    console.log(`PUSH_ROOM: ${roomId}`);
    console.log(`PUSH_EVENT: ${eventId}`);
}

run(main);
