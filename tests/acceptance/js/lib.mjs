// Shared helpers for the matrix-js-sdk acceptance scripts.
//
// Usage of the scripts: node chat.mjs BASE_URL REGISTRATION_TOKEN
//   (or env PAIGHAM_BASE_URL / PAIGHAM_REGISTRATION_TOKEN). Exit 0 on success.
// Env: ACCEPTANCE_VERBOSE=1 logs every HTTP request and the SDK's own log lines;
//      ACCEPTANCE_TIMEOUT_MS overrides the hard timeout.

// ---- environment shims (must run before the SDK is imported) ---------------------------------
// matrix-js-sdk 43 declares node >= 22; on Node 20 only Promise.withResolvers is missing.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}
if (!globalThis.crypto?.subtle) {
    const { webcrypto } = await import("node:crypto");
    globalThis.crypto = webcrypto;
}
await import("fake-indexeddb/auto"); // IndexedDB for the Rust crypto store, as in a browser

const sdk = await import("matrix-js-sdk");
const { default: loglevel } = await import("loglevel");

export { sdk };

export const VERBOSE = !!process.env.ACCEPTANCE_VERBOSE;
// The SDK logs through loglevel loggers ("matrix-<prefix>") that it forces to DEBUG and that copy
// their parent's methodFactory: silence them by swapping the factory on the root and every logger.
if (!VERBOSE) {
    const noop = () => {};
    const quiet = () => noop;
    loglevel.methodFactory = quiet;
    loglevel.rebuild();
    for (const l of Object.values(loglevel.getLoggers())) {
        l.methodFactory = quiet;
        l.rebuild();
    }
}

// ---- arguments / lifecycle -------------------------------------------------------------------

export function parseArgs() {
    const baseUrl = (process.argv[2] || process.env.PAIGHAM_BASE_URL || "").replace(/\/+$/, "");
    const token = process.argv[3] || process.env.PAIGHAM_REGISTRATION_TOKEN || "";
    if (!baseUrl || !token) {
        console.error("usage: node SCRIPT.mjs BASE_URL REGISTRATION_TOKEN");
        process.exit(64);
    }
    return { baseUrl, token };
}

const allClients = [];
let currentStep = "(start)";
const httpLog = [];
const httpDone = [];
const inflightKeys = new Map(); // label -> number of /keys/* requests in flight

/**
 * Wait until client `label` is quiet about `userId`'s keys: no /keys/* request in flight, and two
 * /sync responses that started after its last /keys/* request ended did not list `userId` in
 * device_lists.changed (so every change was delivered and re-queried already).
 */
export async function waitForKeysQuiet(label, userId, what, timeoutMs = 30000) {
    return waitFor(
        () => {
            if ((inflightKeys.get(label) ?? 0) > 0) return false;
            const mine = httpDone.filter((r) => r.label === label);
            const lastKeys = Math.max(0, ...mine.filter((r) => r.path.includes("/keys/")).map((r) => r.ended));
            const after = mine.filter((r) => r.path.endsWith("/sync") && r.started > lastKeys && r.status === 200);
            return after.length >= 2 && after.every((r) => !r.deviceListsChanged?.includes(userId));
        },
        what,
        timeoutMs,
    );
}

/**
 * Wait until a /sync of client `label` that started after `afterMs` listed `userId` in
 * device_lists.changed, and the client then completed a /keys/query.
 */
export async function waitForDeviceListChange(label, userId, afterMs, what, timeoutMs = 20000) {
    const sync = await waitFor(
        () =>
            httpDone.find(
                (r) => r.label === label && r.ended > afterMs && r.deviceListsChanged?.includes(userId),
            ),
        `${what}: ${userId} in device_lists.changed of ${label}'s /sync`,
        timeoutMs,
    );
    return waitForRequest(label, "POST", "/keys/query", sync.ended - 1, `${what}: ${label}'s /keys/query`, timeoutMs);
}

/** Wait until client `label` has completed a request (method + path suffix) that started after `afterMs`. */
export async function waitForRequest(label, method, pathSuffix, afterMs, what, timeoutMs = 20000) {
    return waitFor(
        () =>
            httpDone.find(
                (r) => r.label === label && r.method === method && r.path.endsWith(pathSuffix) && r.started > afterMs,
            ),
        what,
        timeoutMs,
    );
}

export function step(name) {
    currentStep = name;
    console.log(`[${new Date().toISOString()}] STEP ${name}`);
}

function dumpAndExit(code, message) {
    if (code !== 0) {
        console.error(`\nFAILED at step "${currentStep}": ${message}`);
        console.error(`\nlast HTTP requests (of ${httpLog.length}):`);
        for (const line of httpLog.slice(-60)) console.error("  " + line);
    }
    for (const c of allClients) {
        try {
            c.stopClient();
        } catch {
            /* ignore */
        }
    }
    process.exit(code);
}

/** Run main() with a hard timeout; exit 0 on success, 1 on failure, 2 on timeout. */
export function run(main, timeoutMs = Number(process.env.ACCEPTANCE_TIMEOUT_MS || 90000)) {
    const timer = setTimeout(() => dumpAndExit(2, `hard timeout after ${timeoutMs} ms`), timeoutMs);
    process.on("unhandledRejection", (err) => {
        dumpAndExit(1, `unhandled rejection: ${err?.stack || err}`);
    });
    main()
        .then(() => {
            clearTimeout(timer);
            console.log("OK: all steps passed");
            dumpAndExit(0, "");
        })
        .catch((err) => {
            clearTimeout(timer);
            const extra = err?.data ? ` data=${JSON.stringify(err.data)}` : "";
            const status = err?.httpStatus ? ` httpStatus=${err.httpStatus}` : "";
            dumpAndExit(1, `${err?.stack || err}${status}${extra}`);
        });
}

export function assert(cond, message) {
    if (!cond) throw new Error(`assertion failed: ${message}`);
}

export function assertEqual(actual, expected, message) {
    const a = JSON.stringify(actual);
    const e = JSON.stringify(expected);
    if (a !== e) throw new Error(`assertion failed: ${message}\n  expected: ${e}\n  actual:   ${a}`);
}

// ---- HTTP tracing ----------------------------------------------------------------------------

/** `resp.text()`, rejected with the abort's reason as soon as `signal` aborts (see tracedFetch). */
function textOrAbort(resp, signal) {
    if (!signal) return resp.text();
    return new Promise((resolve, reject) => {
        const onAbort = () => reject(signal.reason ?? new DOMException("This operation was aborted", "AbortError"));
        if (signal.aborted) {
            onAbort();
            return;
        }
        signal.addEventListener("abort", onAbort, { once: true });
        resp.text()
            .then(resolve, reject)
            .finally(() => signal.removeEventListener("abort", onAbort));
    });
}

export function tracedFetch(label) {
    return async (input, init = {}) => {
        const url = new URL(typeof input === "object" && "url" in input ? input.url : String(input));
        const method = init.method || "GET";
        const started = Date.now();
        const isKeys = url.pathname.includes("/keys/");
        if (isKeys) inflightKeys.set(label, (inflightKeys.get(label) ?? 0) + 1);
        try {
            const resp = await fetch(input, init);
            const line = `${label}: ${method} ${url.pathname}${url.search.replace(/access_token=[^&]+/, "access_token=…")} -> ${resp.status} (${Date.now() - started} ms)`;
            httpLog.push(line);
            const entry = { label, method, path: url.pathname, status: resp.status, started, ended: Date.now() };
            let out = resp;
            if (url.pathname.endsWith("/sync") && resp.status === 200) {
                // Read the body once here (the SDK gets a copy) and give up on it when the request
                // is aborted: Node 20's fetch (undici), aborted while it inflates a gzip body, leaves
                // the body's read pending for ever — neither resolved nor rejected — and SlidingSync,
                // which aborts its long-poll to change its request, then waits for ever.
                const text = await textOrAbort(resp, init.signal);
                try {
                    entry.deviceListsChanged = JSON.parse(text)?.device_lists?.changed ?? [];
                } catch {
                    entry.deviceListsChanged = [];
                }
                entry.ended = Date.now();
                out = new Response(text, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
            }
            httpDone.push(entry);
            if (VERBOSE) console.log("  http " + line);
            return out;
        } catch (err) {
            httpLog.push(`${label}: ${method} ${url.pathname} -> ${err}`);
            throw err;
        } finally {
            if (isKeys) inflightKeys.set(label, inflightKeys.get(label) - 1);
        }
    };
}

// ---- waiting on client state (no sleeps: poll local state updated by the sync loop) ----------

export async function waitFor(fn, what, timeoutMs = 20000) {
    const deadline = Date.now() + timeoutMs;
    let lastErr;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (err) {
            lastErr = err;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}`);
        }
        await new Promise((r) => setTimeout(r, 50));
    }
}

// ---- registration (User-Interactive Auth with m.login.registration_token) --------------------

export async function registerUser(baseUrl, username, password, token) {
    const client = sdk.createClient({ baseUrl, fetchFn: tracedFetch(`register ${username}`) });
    // Element checks the name first (GET /register/available)
    const available = await client.isUsernameAvailable(username);
    assert(available === true, `username ${username} should be available`);

    const failed = Promise.withResolvers();
    let ia;
    const seenStages = [];
    ia = new sdk.InteractiveAuth({
        matrixClient: client,
        supportedStages: ["m.login.registration_token", "m.login.dummy"],
        doRequest: (auth) =>
            client.registerRequest({
                username,
                password,
                initial_device_display_name: "js-sdk acceptance",
                ...(auth ? { auth } : {}),
            }),
        stateUpdated: (stage, status) => {
            seenStages.push(stage);
            if (status?.errcode) {
                failed.reject(new Error(`UIA stage ${stage} failed: ${status.errcode} ${status.error}`));
                return;
            }
            if (stage === "m.login.registration_token") {
                ia.submitAuthDict({ type: "m.login.registration_token", token }).catch(failed.reject);
            } else {
                failed.reject(new Error(`unexpected UIA stage ${stage}`));
            }
        },
        requestEmailToken: async () => {
            throw new Error("email stage not expected");
        },
    });
    const res = await Promise.race([ia.attemptAuth(), failed.promise]);
    assert(seenStages.includes("m.login.registration_token"), "server never asked for the registration token");
    assert(res.user_id && res.access_token && res.device_id, `register response: ${JSON.stringify(res)}`);
    return { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id, password, username };
}

export async function loginPassword(baseUrl, userId, password, deviceName) {
    const client = sdk.createClient({ baseUrl, fetchFn: tracedFetch(`login ${userId}`) });
    const flows = await client.loginFlows();
    assert(
        flows.flows.some((f) => f.type === "m.login.password"),
        `m.login.password not offered: ${JSON.stringify(flows)}`,
    );
    const res = await client.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: userId },
        password,
        initial_device_display_name: deviceName,
    });
    return { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id, password };
}

// ---- clients ---------------------------------------------------------------------------------

/** A MatrixClient configured the way Element Web does it. */
export function makeClient(baseUrl, account, label, extra = {}) {
    const client = sdk.createClient({
        baseUrl,
        accessToken: account.accessToken,
        userId: account.userId,
        deviceId: account.deviceId,
        timelineSupport: true,
        fetchFn: tracedFetch(label),
        ...extra,
    });
    allClients.push(client);
    return client;
}

export async function startAndWaitPrepared(client, opts = {}) {
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === "ERROR") {
                client.off(sdk.ClientEvent.Sync, onSync);
                reject(new Error(`sync error: ${data?.error?.stack || data?.error || JSON.stringify(data)}`));
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({
        lazyLoadMembers: true, // as Element Web
        initialSyncLimit: 20,
        threadSupport: true,
        pendingEventOrdering: sdk.PendingEventOrdering.Detached,
        pollTimeout: 5000,
        ...opts,
    });
    await prepared;
}

export function liveEvents(client, roomId) {
    const room = client.getRoom(roomId);
    return room ? room.getLiveTimeline().getEvents() : [];
}

export async function waitForEventId(client, roomId, eventId, what) {
    return waitFor(() => liveEvents(client, roomId).find((e) => e.getId() === eventId), what);
}
