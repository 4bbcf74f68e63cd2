// End-to-end encryption with matrix-js-sdk's Rust crypto (as Element Web) against a real server:
// encrypted DM, both sides decrypt, cross-signing (UIA password auth), secret storage + key backup,
// then a NEW login of A restores the backup and decrypts the old messages.
//   node e2ee.mjs BASE_URL REGISTRATION_TOKEN
// Prints "PLAINTEXT: <text>" for every secret it sent, so the caller can check the server's storage.
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
    waitForDeviceListChange,
    waitForKeysQuiet,
} from "./lib.mjs";

const { decodeRecoveryKey } = await import("matrix-js-sdk/lib/crypto-api/index.js");
// The key-backup upload loop starts after a random delay of up to 10 s; the SDK documents that
// tests may reduce it.
const { RustBackupManager } = await import("matrix-js-sdk/lib/rust-crypto/backup.js");
RustBackupManager.maxBackupLoopStartDelayMillis = 200;

const { baseUrl, token } = parseArgs();
const suffix = `${Date.now() % 1e8}${Math.floor(Math.random() * 1e4)}`;
const PASSWORD = "js e2ee acceptance password 2";
const MEGOLM = "m.megolm.v1.aes-sha2";

/** Secret-storage key holder, standing in for the user typing their recovery key. */
function keyHolder() {
    const keys = new Map();
    return {
        keys,
        callbacks: {
            getSecretStorageKey: async ({ keys: wanted }) => {
                const id = Object.keys(wanted).find((k) => keys.has(k));
                return id ? [id, keys.get(id)] : null;
            },
            cacheSecretStorageKey: (keyId, _info, key) => keys.set(keyId, key),
        },
    };
}

/** UIA callback for /keys/device_signing/upload: try without auth, then m.login.password. */
function passwordUia(userId, stats) {
    return async (makeRequest) => {
        try {
            await makeRequest(null);
            stats.withoutAuth++;
            return;
        } catch (err) {
            if (err?.httpStatus !== 401 || !err?.data?.flows) throw err;
            const flows = err.data.flows.map((f) => f.stages);
            assert(
                flows.some((s) => s.length === 1 && s[0] === "m.login.password"),
                `UIA flows for device_signing/upload lack [m.login.password]: ${JSON.stringify(flows)}`,
            );
            assert(err.data.session, "UIA 401 without a session");
            stats.withPassword++;
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: userId },
                password: PASSWORD,
                session: err.data.session,
            });
        }
    };
}

async function newCryptoClient(account, label, holder) {
    const client = makeClient(baseUrl, account, label, { cryptoCallbacks: holder.callbacks });
    await client.initRustCrypto({ cryptoDatabasePrefix: `acc-${label}-${suffix}` });
    await startAndWaitPrepared(client, { pollTimeout: 1000 });
    return client;
}

function findEvent(client, roomId, eventId) {
    return liveEvents(client, roomId).find((e) => e.getId() === eventId);
}

async function waitDecrypted(client, roomId, eventId, body, who) {
    return waitFor(
        async () => {
            const ev = findEvent(client, roomId, eventId);
            if (!ev) return false;
            await client.decryptEventIfNeeded(ev);
            return ev.isEncrypted() && !ev.isDecryptionFailure() && ev.getContent()?.body === body ? ev : false;
        },
        `${who} decrypting ${eventId}`,
        30000,
    ).catch((err) => {
        const ev = findEvent(client, roomId, eventId);
        const state = ev
            ? `type=${ev.getType()} encrypted=${ev.isEncrypted()} failure=${ev.isDecryptionFailure()} reason=${ev.decryptionFailureReason} content=${JSON.stringify(ev.getContent())}`
            : "event not in the live timeline";
        throw new Error(`${err.message}; ${state}`);
    });
}

async function sendSecret(client, roomId, body) {
    console.log(`PLAINTEXT: ${body}`);
    const { event_id } = await client.sendMessage(roomId, { msgtype: "m.text", body });
    const raw = await client.fetchRoomEvent(roomId, event_id);
    assertEqual(raw.type, "m.room.encrypted", `event ${event_id} as stored by the server`);
    assert(!JSON.stringify(raw).includes(body), "the server returned the plaintext");
    return event_id;
}

async function main() {
    step("register A and B");
    const [accA, accB] = await Promise.all([
        registerUser(baseUrl, `jsea${suffix}`, PASSWORD, token),
        registerUser(baseUrl, `jseb${suffix}`, PASSWORD, token),
    ]);

    step("start both clients with Rust crypto");
    const holderA = keyHolder();
    const a = await newCryptoClient(accA, "A", holderA);
    const b = await newCryptoClient(accB, "B", keyHolder());
    for (const [c, acc] of [
        [a, accA],
        [b, accB],
    ]) {
        const keys = await c.getCrypto().getOwnDeviceKeys();
        assert(keys.ed25519 && keys.curve25519, "own device keys");
        // the device keys were uploaded: the server returns them on /keys/query
        const devices = await c.getCrypto().getUserDeviceInfo([acc.userId], true);
        await waitFor(async () => {
            const d = (await c.getCrypto().getUserDeviceInfo([acc.userId], true)).get(acc.userId);
            return d?.get(acc.deviceId);
        }, `${acc.userId}'s own device in /keys/query`);
        assert(devices, "getUserDeviceInfo");
    }

    step("A creates an encrypted DM with B");
    const { room_id: roomId } = await a.createRoom({
        is_direct: true,
        invite: [accB.userId],
        preset: sdk.Preset.TrustedPrivateChat,
        visibility: sdk.Visibility.Private,
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
    });
    await a.setAccountData("m.direct", { [accB.userId]: [roomId] });

    step("B sees the DM invite and joins");
    await waitFor(() => b.getRoom(roomId)?.getMyMembership() === "invite", "invite at B");
    const inviteEvent = b.getRoom(roomId).getMember(accB.userId)?.events?.member;
    assertEqual(inviteEvent?.getContent()?.is_direct, true, "is_direct on B's invite");
    await b.joinRoom(roomId);
    await waitFor(() => a.getRoom(roomId)?.getMember(accB.userId)?.membership === "join", "B's join at A");
    for (const c of [a, b]) {
        await waitFor(() => c.getCrypto().isEncryptionEnabledInRoom(roomId), "room encryption enabled");
    }

    step("A -> B encrypted; B decrypts");
    const secretA = `js secret from A ${suffix}`;
    const evA = await sendSecret(a, roomId, secretA);
    await waitDecrypted(b, roomId, evA, secretA, "B");

    step("B -> A encrypted; A decrypts");
    const secretB = `js secret from B ${suffix}`;
    const evB = await sendSecret(b, roomId, secretB);
    await waitDecrypted(a, roomId, evB, secretB, "A");

    step("A bootstraps cross-signing (UIA password auth)");
    const cryptoA = a.getCrypto();
    const uia = { withoutAuth: 0, withPassword: 0 };
    const bootstrapStarted = Date.now();
    await cryptoA.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordUia(accA.userId, uia) });
    assert(await cryptoA.userHasCrossSigningKeys(accA.userId, true), "A's cross-signing keys on the server");
    // A's own user must show up in its device_lists.changed (its cross-signing keys changed); the SDK
    // then re-queries its own keys. Wait for that before resetting, or that query (returning the old
    // keys) can race with the reset and make the SDK discard the new private keys.
    await waitForDeviceListChange("A", accA.userId, bootstrapStarted, "after A uploaded cross-signing keys");
    await waitForKeysQuiet("A", accA.userId, "A's own key changes all delivered and re-queried");
    // replacing existing cross-signing keys must require UIA (password)
    const before = uia.withPassword;
    await cryptoA.bootstrapCrossSigning({
        setupNewCrossSigning: true,
        authUploadDeviceSigningKeys: passwordUia(accA.userId, uia),
    });
    assertEqual(uia.withPassword, before + 1, "UIA (m.login.password) demanded to replace cross-signing keys");
    console.log(`cross-signing uploads: ${JSON.stringify(uia)}`);
    const csStatus = await cryptoA.getCrossSigningStatus();
    assert(csStatus.publicKeysOnDevice && csStatus.privateKeysCachedLocally.masterKey, `cross-signing: ${JSON.stringify(csStatus)}`);
    // the device signature reaches the SDK through /keys/query after device_lists.changed
    await waitFor(
        async () => (await cryptoA.getDeviceVerificationStatus(accA.userId, accA.deviceId))?.crossSigningVerified,
        "A's device signed by its new self-signing key (in /keys/query)",
    );

    step("A bootstraps secret storage and a new key backup");
    let recoveryKey;
    await cryptoA.bootstrapSecretStorage({
        createSecretStorageKey: async () => {
            recoveryKey = await cryptoA.createRecoveryKeyFromPassphrase();
            return recoveryKey;
        },
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    assert(recoveryKey?.encodedPrivateKey, "a recovery key was generated");
    assert(await cryptoA.isSecretStorageReady(), "secret storage ready");
    const backupVersion = await cryptoA.getActiveSessionBackupVersion();
    assert(backupVersion, "an active key backup version");
    const backupInfo = await cryptoA.getKeyBackupInfo();
    assertEqual(backupInfo?.version, backupVersion, "GET /room_keys/version");
    assertEqual(backupInfo?.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2", "backup algorithm");

    step("A's room keys reach the server-side backup");
    await waitFor(
        async () => {
            const res = await a.http.authedRequest(sdk.Method.Get, "/room_keys/keys", { version: backupVersion });
            const sessions = Object.keys(res?.rooms?.[roomId]?.sessions ?? {});
            return sessions.length >= 2 ? sessions : false; // A's own session and B's
        },
        "both megolm sessions in the key backup",
        30000,
    );

    step("A logs in on a new device, restores the backup with the recovery key");
    const accA2 = await loginPassword(baseUrl, accA.userId, PASSWORD, "js-sdk acceptance 2nd device");
    assert(accA2.deviceId !== accA.deviceId, "a new device id");
    const holderA2 = keyHolder();
    const a2 = await newCryptoClient(accA2, "A2", holderA2);
    const cryptoA2 = a2.getCrypto();
    // the user types the recovery key: decode it and offer it for the default secret storage key
    const defaultKeyId = await a2.secretStorage.getDefaultKeyId();
    assert(defaultKeyId, "default secret storage key id in account data");
    holderA2.keys.set(defaultKeyId, decodeRecoveryKey(recoveryKey.encodedPrivateKey));
    // as Element's "verify with recovery key": import cross-signing keys from 4S, sign this device
    assert(await cryptoA2.userHasCrossSigningKeys(accA.userId, true), "A2 sees A's cross-signing keys");
    await cryptoA2.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordUia(accA.userId, uia) });
    await waitFor(
        async () => (await cryptoA2.getDeviceVerificationStatus(accA.userId, accA2.deviceId))?.crossSigningVerified,
        "the new device is cross-signed",
    );
    await cryptoA2.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await cryptoA2.checkKeyBackupAndEnable();
    assert(check?.backupInfo?.version === backupVersion, `backup check: ${JSON.stringify(check?.backupInfo)}`);
    assert(check.trustInfo?.trusted, "the key backup is trusted by the new device");
    const restored = await cryptoA2.restoreKeyBackup();
    assert(restored.imported >= 2, `restored ${restored.imported}/${restored.total} keys`);

    step("the new device decrypts the OLD messages");
    await waitFor(() => a2.getRoom(roomId), "DM at A2");
    await waitFor(() => findEvent(a2, roomId, evA) && findEvent(a2, roomId, evB), "old messages at A2");
    await waitDecrypted(a2, roomId, evA, secretA, "A2 (old, own)");
    await waitDecrypted(a2, roomId, evB, secretB, "A2 (old, from B)");

    step("B sends a new message; the new device decrypts it");
    const secretC = `js secret after new login ${suffix}`;
    const evC = await sendSecret(b, roomId, secretC);
    await waitDecrypted(a2, roomId, evC, secretC, "A2 (new)");
    await waitDecrypted(a, roomId, evC, secretC, "A (new)");
}

run(main, Number(process.env.ACCEPTANCE_TIMEOUT_MS || 120000));
