// Element Web's first sign-in, as its code does it (MatrixChat's post-login step, then
// InitialCryptoSetupStore and CreateCrossSigning), with matrix-js-sdk's Rust crypto:
//   /versions lists org.matrix.e2e_cross_signing -> probe POST /unstable/keys/device_signing/upload
//   with no keys -> bootstrapCrossSigning (first upload: no UIA) -> no key backup yet -> resetKeyBackup.
// Then a second user sees the new device as signed by its owner: no red shield.
// And a later reset of cross-signing: the empty probe now answers the password flow, the password does.
//   node first_login.mjs BASE_URL REGISTRATION_TOKEN
import {
    assert,
    assertEqual,
    makeClient,
    parseArgs,
    registerUser,
    run,
    sdk,
    startAndWaitPrepared,
    step,
    waitFor,
    waitForRequest,
} from "./lib.mjs";

const { RustBackupManager } = await import("matrix-js-sdk/lib/rust-crypto/backup.js");
RustBackupManager.maxBackupLoopStartDelayMillis = 200;

const { baseUrl, token } = parseArgs();
const suffix = `${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "js first login acceptance password";

async function cryptoClient(account, label) {
    const client = makeClient(baseUrl, account, label);
    await client.initRustCrypto({ cryptoDatabasePrefix: `acc-first-${label}-${suffix}` });
    await startAndWaitPrepared(client, { pollTimeout: 1000 });
    return client;
}

/** Element's canUploadKeysWithPasswordOnly: an upload of nothing, without auth, on the unstable path. */
async function passwordOnlyProbe(client) {
    try {
        await client.uploadDeviceSigningKeys(undefined, {});
        return { ok: true };
    } catch (err) {
        return { status: err?.httpStatus, errcode: err?.errcode, flows: err?.data?.flows };
    }
}

async function masterKeyAsSeenBy(client, userId) {
    const res = await client.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, {
        device_keys: { [userId]: [] },
    });
    return JSON.stringify(res?.master_keys?.[userId]?.keys ?? null);
}

async function main() {
    step("register A and B, start both with Rust crypto");
    const [accA, accB] = await Promise.all([
        registerUser(baseUrl, `jsfa${suffix}`, PASSWORD, token),
        registerUser(baseUrl, `jsfb${suffix}`, PASSWORD, token),
    ]);
    const a = await cryptoClient(accA, "A");
    const b = await cryptoClient(accB, "B");
    const cryptoA = a.getCrypto();

    step("the server advertises cross-signing, so Element sets it up now (E2E_SETUP)");
    assert(await a.doesServerSupportUnstableFeature("org.matrix.e2e_cross_signing"), "org.matrix.e2e_cross_signing");
    assertEqual(await cryptoA.userHasCrossSigningKeys(accA.userId, true), false, "no cross-signing keys yet");

    step("Element's password-only probe reaches the handler on /unstable");
    const first = await passwordOnlyProbe(a);
    assert(first.status === 400 && first.errcode === "M_MISSING_PARAM", `probe: ${JSON.stringify(first)}`);
    assert(!first.flows, "no UIA flows before the first upload (it needs none)");

    step("createCrossSigning: no flows, so Element's UIA dialog first tries without auth");
    const uia = { withoutAuth: 0, withAuth: 0 };
    await cryptoA.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            uia.withoutAuth++;
            await makeRequest(null);
        },
    });
    assertEqual(uia.withoutAuth, 1, "one upload, without UIA");
    assert(await cryptoA.userHasCrossSigningKeys(accA.userId, true), "A's cross-signing keys on the server");
    const status = await cryptoA.getCrossSigningStatus();
    assert(status.publicKeysOnDevice, `cross-signing status: ${JSON.stringify(status)}`);
    assert(await cryptoA.isCrossSigningReady(), "cross-signing ready");
    await waitFor(
        async () => (await cryptoA.getDeviceVerificationStatus(accA.userId, accA.deviceId))?.crossSigningVerified,
        "A's device signed by its self-signing key (the signature went up and came back in /keys/query)",
    );

    step("no key backup yet (404 M_NOT_FOUND is null), so Element creates one");
    assertEqual(await cryptoA.getKeyBackupInfo(), null, "getKeyBackupInfo before any backup");
    await cryptoA.resetKeyBackup();
    const info = await cryptoA.getKeyBackupInfo();
    assert(info?.version, `a key backup version: ${JSON.stringify(info)}`);
    assertEqual(await cryptoA.getActiveSessionBackupVersion(), info.version, "the new backup is in use");
    const trust = await cryptoA.isKeyBackupTrusted(info);
    assert(trust.trusted, `the backup is signed by A (trust: ${JSON.stringify(trust)})`);

    step("A and B share a room (so B's crypto tracks A's devices), A's device is signed by its owner");
    const { room_id: roomId } = await a.createRoom({ invite: [accB.userId], is_direct: true });
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "invite", "invite at B");
    await b.joinRoom(roomId);
    await waitFor(
        async () => {
            return (await b.getCrypto().getDeviceVerificationStatus(accA.userId, accA.deviceId))?.signedByOwner;
        },
        "B: A's device signedByOwner",
    ).catch(async (err) => {
        const raw = await b.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, {
            device_keys: { [accA.userId]: [] },
        });
        const st = await b.getCrypto().getDeviceVerificationStatus(accA.userId, accA.deviceId);
        throw new Error(`${err.message}; B's status ${JSON.stringify(st)}; /keys/query ${JSON.stringify(raw)}`);
    });
    const seen = await b.getCrypto().getDeviceVerificationStatus(accA.userId, accA.deviceId);
    assertEqual(seen.signedByOwner, true, "signedByOwner");
    const identity = await b.getCrypto().getUserVerificationStatus(accA.userId);
    assert(!identity.needsUserApproval, `A's identity needs no approval at B: ${JSON.stringify(identity)}`);

    step("a later reset: the empty probe now answers the password flow, and the password alone does");
    const later = await passwordOnlyProbe(a);
    assert(later.status === 401, `probe over existing keys: ${JSON.stringify(later)}`);
    assert(
        later.flows?.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.password"),
        `password-only flow offered: ${JSON.stringify(later.flows)}`,
    );
    const oldMaster = await masterKeyAsSeenBy(b, accA.userId);
    const resetStarted = Date.now();
    await cryptoA.bootstrapCrossSigning({
        setupNewCrossSigning: true,
        authUploadDeviceSigningKeys: async (makeRequest) => {
            uia.withAuth++;
            // as Element with the password it was signed in with: no session, no first try
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: accA.userId },
                password: PASSWORD,
            });
        },
    });
    assertEqual(uia.withAuth, 1, "one upload, with the password");
    await waitForRequest("A", "POST", "/keys/signatures/upload", resetStarted, "A signs its device again");
    const newMaster = await masterKeyAsSeenBy(a, accA.userId);
    assert(newMaster !== oldMaster, "a new master key on the server");
    await waitFor(
        async () => {
            const s = await b.getCrypto().getDeviceVerificationStatus(accA.userId, accA.deviceId);
            return s?.signedByOwner && (await masterKeyAsSeenBy(b, accA.userId)) === newMaster;
        },
        "B: A's device signed by A's NEW keys",
    );
    console.log(`cross-signing uploads: ${JSON.stringify(uia)}`);
}

run(main, Number(process.env.ACCEPTANCE_TIMEOUT_MS || 90000));
