import Foundation
import Testing
@testable import ShardServer

/// The 0-db command set, driven by real clients: redis-cli (Debian's redis-tools) and the Python
/// `redis` package (Debian's python3-redis).
@Suite(.serialized) struct CommandTests {
    @Test func basicCommandsAnswerLike0db() async throws {
        try await withServer { s in
            #expect(try s.cli("PING") == "PONG")
            #expect(try s.cli("SET", "alpha", "hello") == "\"alpha\"")  // SET answers the key
            #expect(try s.cli("SET", "alpha", "hello") == "(nil)")      // unchanged value: nil
            #expect(try s.cli("GET", "alpha") == "\"hello\"")
            #expect(try s.cli("GET", "missing") == "(nil)")
            #expect(try s.cli("EXISTS", "alpha") == "(integer) 1")
            #expect(try s.cli("EXISTS", "missing") == "(integer) 0")
            #expect(try s.cli("LENGTH", "alpha") == "(integer) 5")
            #expect(try s.cli("LENGTH", "missing") == "(nil)")
            #expect(try s.cli("CHECK", "alpha") == "(integer) 1")
            #expect(try s.cli("CHECK", "missing") == "(nil)")
            #expect(try s.cli("DBSIZE") == "(integer) 1")
            let keytime = try s.cli("KEYTIME", "alpha")
            let stamp = Int(keytime.replacingOccurrences(of: "(integer) ", with: "")) ?? 0
            #expect(abs(stamp - Int(Date().timeIntervalSince1970)) < 60, "KEYTIME \(keytime)")
            #expect(try s.cli("SET", "alpha", "changed") == "\"alpha\"")
            #expect(try s.cli("GET", "alpha") == "\"changed\"")
            #expect(try s.cli("DEL", "alpha") == "OK")
            #expect(try s.cli("GET", "alpha") == "(nil)")
            #expect(try s.cli("DEL", "alpha") == "(error) Key not found")
            #expect(try s.cli("DBSIZE") == "(integer) 0")
            #expect(try s.cli("FLUSHALL") == "(error) Command not supported")
            #expect(try s.cli("GET") == "(error) Unexpected arguments")
            let time = try s.cli("TIME").split(separator: "\n")
            #expect(time.count == 2)
            #expect(try s.cli("INFO").contains("server_name"))
            #expect(try s.cli("SCAN") == "(error) No more data")
            #expect(try s.cli("NSLIST") == "1) \"default\"")
        }
    }

    @Test func keyAndValueLimits() async throws {
        try await withServer { s in
            let out = try Python.run(port: s.port, """
            res = {}
            res['key255'] = r.execute_command('SET', b'k' * 255, b'v').decode()
            res['key256'] = err(lambda: r.execute_command('SET', b'k' * 256, b'v'))
            res['get256'] = err(lambda: r.execute_command('GET', b'k' * 256))
            big = os.urandom(8 << 20)
            res['max'] = r.execute_command('SET', 'max', big).decode()
            res['maxback'] = r.execute_command('GET', 'max') == big
            res['over'] = err(lambda: r.execute_command('SET', 'over', b'x' * ((8 << 20) + 1)))
            res['after'] = r.execute_command('PING').decode()
            res['exists_over'] = r.execute_command('EXISTS', 'over')
            res['emptykey'] = err(lambda: r.execute_command('SET', '', 'v'))
            res['emptyvalue'] = r.execute_command('SET', 'e', b'').decode()
            res['emptyback'] = r.execute_command('GET', 'e') == b''
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["key255"] as? String == String(repeating: "k", count: 255))
            #expect(res["key256"] as? String == "Key too large")
            #expect(res["get256"] as? String == "Invalid key")
            #expect(res["max"] as? String == "max")
            #expect(res["maxback"] as? Bool == true)
            #expect((res["over"] as? String)?.hasPrefix("Value too large") == true)
            #expect(res["after"] as? String == "PONG")
            #expect(res["exists_over"] as? Int == 0)
            #expect(res["emptykey"] as? String == "Invalid argument, key needed")
            #expect(res["emptyvalue"] as? String == "e")
            #expect(res["emptyback"] as? Bool == true)
        }
    }

    @Test func largeValuesGoThroughSendfileAndMGetMixesPaths() async throws {
        try await withServer(configure: { $0.sendfileThreshold = 1024 }) { s in
            let out = try Python.run(port: s.port, """
            small = os.urandom(100)
            large = os.urandom(3 << 20)
            r.execute_command('SET', 'small', small)
            r.execute_command('SET', 'large', large)
            ok = r.execute_command('GET', 'large') == large
            got = r.execute_command('MGET', 'small', 'missing', 'large', 'small')
            print(json.dumps({'get': ok, 'mget': got == [small, None, large, small]}))
            """)
            #expect(out == "{\"get\": true, \"mget\": true}")
            let stats = try s.server.statistics()
            #expect(stats.bytesRead >= UInt64(2 * (3 << 20)))
        }
    }

    @Test func adminAuthAndNamespaceAdministration() async throws {
        try await withServer { s in
            let replies = try RedisCLI.session(port: s.port, [
                "NSNEW ns1",                      // not admin yet
                "AUTH wrong",
                "AUTH admin-secret",
                "NSNEW ns1",
                "NSNEW ns1",
                "NSNEW bad/name",
                "NSSET ns1 maxsize 1000",
                "NSSET ns1 colour blue",
                "NSSET default public 0",
                "NSDEL default",
                "NSDEL nothere",
                "NSINFO nothere",
                "SELECT nothere",
                "SELECT ns1",
                "NSDEL ns1",                      // the namespace this session uses
            ])
            #expect(replies == [
                "(error) Permission denied",
                "(error) Access denied",
                "OK",
                "OK",
                "(error) This namespace is not available",
                "(error) This name is not allowed",
                "OK",
                "(error) Invalid property",
                "(error) Cannot update default namespace",
                "(error) Cannot remove default namespace",
                "(error) This namespace doesn't exists",
                "(error) Namespace not found",
                "(error) Namespace not found",
                "OK",
                "(error) Cannot remove namespace you're currently using.",
            ])
            let info = try s.cli("NSINFO", "ns1")
            #expect(info.contains("name: ns1"))
            #expect(info.contains("data_limits_bytes: 1000"))
            #expect(try s.cli("NSLIST").contains("ns1"))
            #expect(try s.server.namespaceNames() == ["default", "ns1"])
            let deleted = try RedisCLI.session(port: s.port, ["AUTH admin-secret", "NSDEL ns1", "NSLIST"])
            #expect(deleted == ["OK", "OK", "1) \"default\""])
            #expect(!FileManager.default.fileExists(atPath: s.dataPath + "/ns1"))
        }
    }

    @Test func authSecureChallenge() async throws {
        try await withServer { s in
            let out = try Python.run(port: s.port, """
            res = {}
            res['nochallenge'] = err(lambda: r.execute_command('AUTH', 'SECURE', 'a' * 40))
            nonce = r.execute_command('AUTH', 'SECURE', 'CHALLENGE')
            nonce = nonce.decode() if isinstance(nonce, bytes) else str(nonce)
            good = hashlib.sha1(('%s:%s' % (nonce, 'admin-secret')).encode()).hexdigest()
            res['ok'] = r.execute_command('AUTH', 'SECURE', good).decode()
            res['nsnew'] = r.execute_command('NSNEW', 'viasecure').decode()
            nonce = r.execute_command('AUTH', 'SECURE', 'CHALLENGE')
            nonce = nonce.decode() if isinstance(nonce, bytes) else str(nonce)
            bad = hashlib.sha1(('%s:%s' % (nonce, 'wrong')).encode()).hexdigest()
            res['bad'] = err(lambda: r.execute_command('AUTH', 'SECURE', bad))
            res['reuse'] = err(lambda: r.execute_command('AUTH', 'SECURE', good))
            res['short'] = err(lambda: (r.execute_command('AUTH', 'SECURE', 'CHALLENGE'), r.execute_command('AUTH', 'SECURE', 'abc')))
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["nochallenge"] as? String == "No CHALLENGE requested, secure authentication not available")
            #expect(res["ok"] as? String == "OK")
            #expect(res["nsnew"] as? String == "OK")
            #expect(res["bad"] as? String == "Access denied")
            #expect(res["reuse"] as? String == "No CHALLENGE requested, secure authentication not available")
            #expect(res["short"] as? String == "Invalid hash length")
        }
    }

    @Test func selectWithPasswordsPublicAndSecureDigest() async throws {
        try await withServer { s in
            try s.server.createNamespace("pub", settings: NamespaceSettings(password: "pw-pub", isPublic: true))
            try s.server.createNamespace("priv", settings: NamespaceSettings(password: "pw-priv", isPublic: false))
            let out = try Python.run(port: s.port, """
            res = {}
            res['priv_nopw'] = err(lambda: r.execute_command('SELECT', 'priv'))
            res['priv_wrong'] = err(lambda: r.execute_command('SELECT', 'priv', 'nope'))
            r.execute_command('SELECT', 'priv', 'pw-priv')
            res['priv_set'] = r.execute_command('SET', 'k', 'private value').decode()
            r.execute_command('SELECT', 'pub', 'pw-pub')
            r.execute_command('SET', 'shared', 'public value')
            # Without the password: readable, not writable.
            r.execute_command('SELECT', 'pub')
            res['pub_get'] = r.execute_command('GET', 'shared').decode()
            res['pub_set'] = err(lambda: r.execute_command('SET', 'x', 'y'))
            res['pub_del'] = err(lambda: r.execute_command('DEL', 'shared'))
            # SELECT name SECURE sha1(nonce:password)
            res['secure_nochallenge'] = err(lambda: r.execute_command('SELECT', 'priv', 'SECURE', 'a' * 40))
            nonce = r.execute_command('AUTH', 'SECURE', 'CHALLENGE')
            nonce = nonce.decode() if isinstance(nonce, bytes) else str(nonce)
            digest = hashlib.sha1(('%s:%s' % (nonce, 'pw-priv')).encode()).hexdigest()
            res['secure'] = r.execute_command('SELECT', 'priv', 'SECURE', digest).decode()
            res['secure_get'] = r.execute_command('GET', 'k').decode()
            nonce = r.execute_command('AUTH', 'SECURE', 'CHALLENGE')
            nonce = nonce.decode() if isinstance(nonce, bytes) else str(nonce)
            wrong = hashlib.sha1(('%s:%s' % (nonce, 'bad')).encode()).hexdigest()
            res['secure_wrong'] = err(lambda: r.execute_command('SELECT', 'priv', 'SECURE', wrong))
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["priv_nopw"] as? String == "Namespace protected and private")
            #expect(res["priv_wrong"] as? String == "Access denied")
            #expect(res["priv_set"] as? String == "k")
            #expect(res["pub_get"] as? String == "public value")
            #expect(res["pub_set"] as? String == "Namespace is in read-only mode")
            #expect(res["pub_del"] as? String == "Namespace is in read-only mode")
            #expect(res["secure_nochallenge"] as? String == "No CHALLENGE requested, secure authentication not available")
            #expect(res["secure"] as? String == "OK")
            #expect(res["secure_get"] as? String == "private value")
            #expect(res["secure_wrong"] as? String == "Access denied")
        }
    }

    @Test func maxsizeWormLockFreeze() async throws {
        try await withServer { s in
            let out = try Python.run(port: s.port, """
            res = {}
            r.execute_command('AUTH', 'admin-secret')
            r.execute_command('NSNEW', 'lim')
            r.execute_command('NSSET', 'lim', 'maxsize', '100')
            r.execute_command('SELECT', 'lim')
            r.execute_command('SET', 'a', b'x' * 60)
            res['over'] = err(lambda: r.execute_command('SET', 'b', b'y' * 60))
            res['replace'] = r.execute_command('SET', 'a', b'z' * 90).decode()   # replacing may reuse its own bytes
            res['still_a'] = r.execute_command('GET', 'a') == b'z' * 90
            res['b_absent'] = r.execute_command('EXISTS', 'b')
            r.execute_command('NSNEW', 'w')
            r.execute_command('NSSET', 'w', 'worm', '1')
            r.execute_command('SELECT', 'w')
            r.execute_command('SET', 'once', 'first')
            res['worm_same'] = r.execute_command('SET', 'once', 'first')
            res['worm_over'] = err(lambda: r.execute_command('SET', 'once', 'second'))
            res['worm_del'] = err(lambda: r.execute_command('DEL', 'once'))
            res['worm_get'] = r.execute_command('GET', 'once').decode()
            r.execute_command('NSSET', 'w', 'lock', '1')
            res['lock_set'] = err(lambda: r.execute_command('SET', 'new', 'v'))
            res['lock_get'] = r.execute_command('GET', 'once').decode()
            r.execute_command('NSSET', 'w', 'lock', '0')
            r.execute_command('NSSET', 'w', 'freeze', '1')
            res['freeze_get'] = err(lambda: r.execute_command('GET', 'once'))
            res['freeze_set'] = err(lambda: r.execute_command('SET', 'new', 'v'))
            r.execute_command('NSSET', 'w', 'freeze', '0')
            res['thawed'] = r.execute_command('GET', 'once').decode()
            res['badvalue'] = err(lambda: r.execute_command('NSSET', 'w', 'worm', 'maybe'))
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["over"] as? String == "No space left on this namespace")
            #expect(res["replace"] as? String == "a")
            #expect(res["still_a"] as? Bool == true)
            #expect(res["b_absent"] as? Int == 0)
            #expect(res["worm_same"] is NSNull)
            #expect(res["worm_over"] as? String == "Cannot overwrite a key when namespace is in worm mode")
            #expect(res["worm_del"] as? String == "Cannot delete a key when namespace is in worm mode")
            #expect(res["worm_get"] as? String == "first")
            #expect(res["lock_set"] as? String == "Namespace is temporarily locked")
            #expect(res["lock_get"] as? String == "first")
            #expect(res["freeze_get"] as? String == "Namespace is temporarily frozen")
            #expect(res["freeze_set"] as? String == "Namespace is temporarily frozen")
            #expect(res["thawed"] as? String == "first")
            #expect(res["badvalue"] as? String == "Invalid value")
        }
    }

    @Test func sequentialModeAnswersLittleEndianIds() async throws {
        try await withServer { s in
            try s.server.createNamespace("seq", settings: NamespaceSettings(mode: .seq))
            let out = try Python.run(port: s.port, """
            res = {}
            r.execute_command('SELECT', 'seq')
            ids = [r.execute_command('SET', '', 'value %d' % i) for i in range(3)]
            res['ids'] = [i.hex() for i in ids]
            res['get1'] = r.execute_command('GET', ids[1]).decode()
            res['update'] = r.execute_command('SET', ids[1], 'changed').hex()
            res['get1b'] = r.execute_command('GET', ids[1]).decode()
            res['unknown'] = err(lambda: r.execute_command('SET', (99).to_bytes(8, 'little'), 'x'))
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["ids"] as? [String] == ["0000000000000000", "0100000000000000", "0200000000000000"])
            #expect(res["get1"] as? String == "value 1")
            #expect(res["update"] as? String == "0100000000000000")
            #expect(res["get1b"] as? String == "changed")
            #expect(res["unknown"] as? String == "Invalid key, only update authorized")
            // Ids continue after a restart.
            let s2 = try await s.restarted()
            let next = Result { try Python.run(port: s2.port, """
                r.execute_command('SELECT', 'seq')
                print(r.execute_command('SET', '', 'after restart').hex())
                """) }
            try await s2.stop()
            #expect(try next.get() == "0300000000000000")
        }
    }

    @Test func scanRscanAndKeycurWalkInWriteOrder() async throws {
        try await withServer { s in
            let out = try Python.run(port: s.port, """
            res = {}
            for i in range(250):
                r.execute_command('SET', 'k%03d' % i, 'v' * (i + 1))
            r.execute_command('SET', 'k010', 'rewritten')      # moves k010 to the end of the walk
            r.execute_command('DEL', 'k020')
            def walk(cmd, cursor=None):
                keys = []
                for _ in range(100):
                    try:
                        reply = r.execute_command(cmd, cursor) if cursor is not None else r.execute_command(cmd)
                    except redis.ResponseError as e:
                        assert str(e) == 'No more data', str(e)
                        return keys
                    cursor = reply[0]
                    assert len(cursor) == 8
                    for key, size, ts in reply[1]:
                        keys.append((key.decode(), size))
                raise Exception('walk did not end')
            fwd = walk('SCAN')
            res['fwd_count'] = len(fwd)
            res['fwd_first'] = fwd[0]
            res['fwd_last'] = fwd[-1]
            res['has_k020'] = any(k == 'k020' for k, _ in fwd)
            back = walk('RSCAN')
            res['back_is_reverse'] = back == list(reversed(fwd))
            cur = r.execute_command('KEYCUR', 'k100')
            after = walk('SCAN', cur)
            res['after_first'] = after[0][0]
            res['after_count'] = len(after)
            res['badcursor'] = err(lambda: r.execute_command('SCAN', 'abc'))
            res['keycur_missing'] = err(lambda: r.execute_command('KEYCUR', 'nope'))
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["fwd_count"] as? Int == 249)
            #expect(res["fwd_first"] as? [AnyHashable] == ["k000", 1])
            #expect(res["fwd_last"] as? [AnyHashable] == ["k010", 9])
            #expect(res["has_k020"] as? Bool == false)
            #expect(res["back_is_reverse"] as? Bool == true)
            #expect(res["after_first"] as? String == "k101")
            #expect(res["after_count"] as? Int == 150)  // k101...k249, then k010, rewritten last
            #expect(res["badcursor"] as? String == "Invalid key format")
            #expect(res["keycur_missing"] as? String == "Key not found")
        }
    }

    @Test func proofIsBlake2bOfNonceAndRange() async throws {
        try await withServer(configure: { $0.sendfileThreshold = 1024 }) { s in
            let out = try Python.run(port: s.port, """
            res = {}
            data = os.urandom(300000)
            r.execute_command('SET', 'shard', data)
            nonce = os.urandom(32)
            res['full'] = r.execute_command('PROOF', 'shard', nonce) == hashlib.blake2b(nonce + data, digest_size=32).digest()
            res['range'] = r.execute_command('PROOF', 'shard', nonce, 1000, 5000) == hashlib.blake2b(nonce + data[1000:6000], digest_size=32).digest()
            res['empty_range'] = r.execute_command('PROOF', 'shard', nonce, 300000, 0) == hashlib.blake2b(nonce, digest_size=32).digest()
            res['bad_range'] = err(lambda: r.execute_command('PROOF', 'shard', nonce, 299999, 2))
            res['neg_range'] = err(lambda: r.execute_command('PROOF', 'shard', nonce, -1, 2))
            res['missing'] = r.execute_command('PROOF', 'nothing', nonce)
            res['args'] = err(lambda: r.execute_command('PROOF', 'shard'))
            print(json.dumps(res))
            """)
            let res = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect(res["full"] as? Bool == true)
            #expect(res["range"] as? Bool == true)
            #expect(res["empty_range"] as? Bool == true)
            #expect(res["bad_range"] as? String == "Invalid range")
            #expect(res["neg_range"] as? String == "Invalid range")
            #expect(res["missing"] is NSNull)
            #expect(res["args"] as? String == "Unexpected arguments")
        }
    }

    @Test func sessionOnADeletedNamespaceIsToldAndDisconnected() async throws {
        try await withServer { s in
            try s.server.createNamespace("doomed")
            let client = try RawClient(port: s.port)
            client.send("*2\r\n$6\r\nSELECT\r\n$6\r\ndoomed\r\n")
            #expect(client.receive(until: "\r\n") == "+OK\r\n")
            try s.server.deleteNamespace("doomed")
            client.send("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            #expect(client.receive(until: "\r\n") == "-Your active namespace is not available anymore (probably removed).\r\n")
            #expect(client.isClosedByPeer())
        }
    }

    @Test func localAdminAPIAndCounters() async throws {
        try await withServer { s in
            try s.server.createNamespace("prov", settings: NamespaceSettings(maxSize: 10, password: "p"))
            #expect(throws: ShardServerError.namespaceExists("prov")) { try s.server.createNamespace("prov") }
            #expect(throws: ShardServerError.self) { try s.server.createNamespace("../escape") }
            try s.server.updateNamespace("prov") { $0.maxSize = 20; $0.password = nil }
            let info = try s.server.namespaceInfo("prov")
            #expect(info.settings.maxSize == 20)
            #expect(info.settings.password == nil)
            _ = try RedisCLI.session(port: s.port, ["SELECT prov", "SET a 0123456789", "GET a"])
            let stats = try s.server.statistics()
            #expect(stats.sets == 1)
            #expect(stats.gets == 1)
            #expect(stats.bytesWritten == 10)
            #expect(stats.namespaces.first { $0.name == "prov" }?.dataSize == 10)
            try s.server.deleteNamespace("prov")
            #expect(throws: ShardServerError.namespaceMissing("prov")) { try s.server.namespaceInfo("prov") }
        }
    }
}
