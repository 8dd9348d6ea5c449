"""The wire-protocol decoder: names as in the PostgreSQL docs, safe summaries, robust on any bytes."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pgfactory_kit.measuring.wire_protocol import (
    CANCEL_REQUEST_CODE,
    CLIENT,
    CUT,
    ENCRYPTED,
    GSSENC_REQUEST_CODE,
    MALFORMED,
    SERVER,
    SSL_REQUEST_CODE,
    UNKNOWN,
    Conversation,
    Frame,
    decode,
    summarize,
)

SECRET = "Tr0ub4dor&3-wiretap"


def typed(kind: str, body: bytes = b"") -> bytes:
    return kind.encode() + struct.pack("!I", len(body) + 4) + body


def untyped(code: int, body: bytes = b"") -> bytes:
    return struct.pack("!II", len(body) + 8, code) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def startup(**params: str) -> bytes:
    body = b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\x00"
    return untyped(196608, body)


def auth(code: int, extra: bytes = b"") -> bytes:
    return typed("R", struct.pack("!I", code) + extra)


def ready(status: str = "I") -> bytes:
    return typed("Z", status.encode())


def row_description(*names: str) -> bytes:
    cols = b"".join(cstr(n) + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0) for n in names)
    return typed("T", struct.pack("!h", len(names)) + cols)


def data_row(*values: bytes | None) -> bytes:
    parts = b"".join(struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in values)
    return typed("D", struct.pack("!h", len(values)) + parts)


def scram_connect() -> list[tuple[str, bytes]]:
    """A libpq connect with sslmode=prefer against a server without TLS, SCRAM, then SELECT 1."""
    client_first = b"n,,n=,r=abcdefghijklmnop"
    return [
        (CLIENT, untyped(SSL_REQUEST_CODE)),
        (SERVER, b"N"),
        (CLIENT, startup(user="alice", database="kit", application_name="lesson")),
        (SERVER, auth(10, cstr("SCRAM-SHA-256") + b"\x00")),
        (CLIENT, typed("p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(client_first)) + client_first)),
        (SERVER, auth(11, b"r=abcdefghijklmnopSERVER,s=c2FsdA==,i=4096")),
        (CLIENT, typed("p", b"c=biws,r=abcdefghijklmnopSERVER,p=PROOFPROOFPROOF")),
        (SERVER, auth(12, b"v=SERVERSIGNATURE") + auth(0)
         + typed("S", cstr("server_version") + cstr("18.1"))
         + typed("S", cstr("TimeZone") + cstr("UTC"))
         + typed("K", struct.pack("!II", 4242, 0xDEADBEEF)) + ready()),
        (CLIENT, typed("Q", cstr("SELECT 1"))),
        (SERVER, row_description("?column?") + data_row(b"1") + typed("C", cstr("SELECT 1")) + ready()),
        (CLIENT, typed("X")),
    ]


def names(frames: list[Frame]) -> list[tuple[str, str]]:
    return [(f.direction, f.name) for f in frames]


def test_a_scram_connect_and_query_decode_to_the_documented_message_names() -> None:
    frames = decode(scram_connect())
    assert names(frames) == [
        (CLIENT, "SSLRequest"), (SERVER, "SSLResponse"), (CLIENT, "StartupMessage"),
        (SERVER, "AuthenticationSASL"), (CLIENT, "SASLInitialResponse"), (SERVER, "AuthenticationSASLContinue"),
        (CLIENT, "SASLResponse"), (SERVER, "AuthenticationSASLFinal"), (SERVER, "AuthenticationOk"),
        (SERVER, "ParameterStatus"), (SERVER, "ParameterStatus"), (SERVER, "BackendKeyData"),
        (SERVER, "ReadyForQuery"), (CLIENT, "Query"), (SERVER, "RowDescription"), (SERVER, "DataRow"),
        (SERVER, "CommandComplete"), (SERVER, "ReadyForQuery"), (CLIENT, "Terminate")]


def test_message_lengths_add_up_to_the_bytes_on_the_wire() -> None:
    events = scram_connect()
    frames = decode(events)
    for side in (CLIENT, SERVER):
        assert sum(f.length for f in frames if f.direction == side) == sum(len(b) for d, b in events if d == side)


def test_summaries_show_query_text_parameter_status_and_transaction_status() -> None:
    summaries = {f.name: summarize(f) for f in decode(scram_connect())}
    assert summaries["Query"] == "SELECT 1"
    assert summaries["StartupMessage"] == "protocol 3.0 user=alice database=kit application_name=lesson"
    assert summaries["ReadyForQuery"] == "I (idle)"
    assert summaries["AuthenticationSASL"] == "mechanisms SCRAM-SHA-256"
    assert summaries["SASLInitialResponse"] == "mechanism SCRAM-SHA-256, SASL data not shown"
    assert summaries["RowDescription"] == "1 column: ?column?"
    assert summaries["DataRow"] == "1 column, 5 bytes (values not shown)"
    assert summaries["CommandComplete"] == "SELECT 1"
    assert summaries["BackendKeyData"] == "backend pid 4242 (cancel key not shown)"
    frames = decode([(SERVER, ready("T") + ready("E"))])
    assert [summarize(f) for f in frames] == ["T (in transaction)", "E (failed transaction)"]


def test_no_sasl_payload_cancel_key_or_proof_is_kept_anywhere_in_a_frame() -> None:
    frames = decode(scram_connect())
    text = repr(frames) + " ".join(summarize(f) for f in frames)
    for secret in ("PROOF", "SERVERSIGNATURE", "c2FsdA", "abcdefghijklmnop", "deadbeef", "3735928559"):
        assert secret not in text and secret.encode() not in b"".join(
            f.detail for f in frames if isinstance(f.detail, bytes))


def test_a_cleartext_or_md5_password_message_keeps_only_its_length() -> None:
    for code in (3, 5):
        frames = decode([(CLIENT, startup(user="u")), (SERVER, auth(code, b"SALT" if code == 5 else b"")),
                         (CLIENT, typed("p", cstr(SECRET)))])
        assert names(frames)[-1] == (CLIENT, "PasswordMessage")
        assert SECRET not in repr(frames) and "SALT" not in repr(frames)
        assert summarize(frames[-1]) == f"{len(SECRET) + 1} bytes, not shown"
        assert frames[1].name == ("AuthenticationCleartextPassword" if code == 3 else "AuthenticationMD5Password")


def test_query_text_after_password_is_masked() -> None:
    queries = [f"ALTER ROLE kit PASSWORD '{SECRET}'", f"create role x login password '{SECRET}' valid until 'x'",
               f"ALTER ROLE kit WITH ENCRYPTED PASSWORD $${SECRET}$$",
               f"SELECT dblink_connect('host=h password={SECRET}')", f"ALTER ROLE kit PASSWORD U&'{SECRET}'"]
    for query in queries:
        frame = decode([(CLIENT, startup(user="u")), (CLIENT, typed("Q", cstr(query)))])[-1]
        assert SECRET not in repr(frame) and SECRET not in summarize(frame), query
    frame = decode([(CLIENT, startup(user="u")), (CLIENT, typed("Q", cstr(queries[0])))])[-1]
    assert summarize(frame) == "ALTER ROLE kit PASSWORD '***'"


def test_bind_shows_parameter_lengths_never_values() -> None:
    params = [SECRET.encode(), None, b"42"]
    body = cstr("") + cstr("stmt1") + struct.pack("!h", 0) + struct.pack("!h", len(params))
    body += b"".join(struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p for p in params)
    body += struct.pack("!h", 0)
    frame = decode([(CLIENT, startup(user="u")), (CLIENT, typed("B", body))])[-1]
    assert frame.name == "Bind" and SECRET not in repr(frame)
    assert summarize(frame) == (f"portal '' statement 'stmt1', 3 parameters (lengths {len(SECRET)}, NULL, 2; "
                                "values not shown)")


def test_every_listed_frontend_type_byte_has_its_documented_name() -> None:
    expected = {"Q": "Query", "P": "Parse", "B": "Bind", "D": "Describe", "E": "Execute", "S": "Sync",
                "H": "Flush", "C": "Close", "X": "Terminate", "F": "FunctionCall", "d": "CopyData",
                "c": "CopyDone", "f": "CopyFail"}
    for kind, name in expected.items():
        frame = decode([(CLIENT, startup(user="u")), (CLIENT, typed(kind, b"S\x00\x00\x00\x00\x00\x00\x00"))])[-1]
        assert frame.name == name, kind


def test_every_listed_backend_type_byte_has_its_documented_name() -> None:
    expected = {"S": "ParameterStatus", "K": "BackendKeyData", "Z": "ReadyForQuery", "T": "RowDescription",
                "D": "DataRow", "C": "CommandComplete", "E": "ErrorResponse", "N": "NoticeResponse",
                "A": "NotificationResponse", "I": "EmptyQueryResponse", "1": "ParseComplete",
                "2": "BindComplete", "3": "CloseComplete", "n": "NoData", "t": "ParameterDescription",
                "s": "PortalSuspended", "G": "CopyInResponse", "H": "CopyOutResponse", "W": "CopyBothResponse",
                "d": "CopyData", "c": "CopyDone", "V": "FunctionCallResponse", "v": "NegotiateProtocolVersion"}
    for kind, name in expected.items():
        frame = decode([(SERVER, typed(kind, b"\x00\x00\x00\x00\x00\x00\x00\x00"))])[-1]
        assert frame.name == name, kind
    auth_names = {0: "AuthenticationOk", 3: "AuthenticationCleartextPassword", 5: "AuthenticationMD5Password",
                  10: "AuthenticationSASL", 11: "AuthenticationSASLContinue", 12: "AuthenticationSASLFinal",
                  7: "AuthenticationGSS", 8: "AuthenticationGSSContinue", 9: "AuthenticationSSPI",
                  2: "AuthenticationKerberosV5"}
    for code, name in auth_names.items():
        assert decode([(SERVER, auth(code, b"SALT" if code == 5 else b""))])[-1].name == name


def test_error_response_summary_shows_severity_code_and_message_but_not_detail() -> None:
    body = cstr("SERROR") + cstr("C42P01") + cstr('Mrelation "nope" does not exist') + cstr("Dsecret detail")
    frame = decode([(SERVER, typed("E", body + b"\x00"))])[0]
    assert summarize(frame) == 'ERROR 42P01 relation "nope" does not exist'


def test_the_startup_phase_requests_are_recognised_by_their_codes() -> None:
    pid_key = struct.pack("!II", 777, 0xC0FFEE)
    assert [f.name for f in decode([(CLIENT, untyped(CANCEL_REQUEST_CODE, pid_key))])] == ["CancelRequest"]
    assert summarize(decode([(CLIENT, untyped(CANCEL_REQUEST_CODE, pid_key))])[0]) == (
        "cancel backend pid 777 (key not shown)")
    frames = decode([(CLIENT, untyped(GSSENC_REQUEST_CODE)), (SERVER, b"N"), (CLIENT, untyped(SSL_REQUEST_CODE)),
                     (SERVER, b"N"), (CLIENT, startup(user="u"))])
    assert [f.name for f in frames] == ["GSSENCRequest", "GSSENCResponse", "SSLRequest", "SSLResponse",
                                        "StartupMessage"]


def test_an_s_answer_records_encrypted_from_here_and_stops_decoding() -> None:
    tls = b"\x16\x03\x01\x02\x00" + bytes(range(256)) * 3
    events = [(CLIENT, untyped(SSL_REQUEST_CODE)), (SERVER, b"S"), (CLIENT, tls), (SERVER, b"\x16\x03\x03" + tls)]
    conv = Conversation()
    frames = [f for d, b in events for f in conv.feed(d, b)] + conv.close()
    assert [f.name for f in frames] == ["SSLRequest", "SSLResponse", ENCRYPTED]
    assert conv.undecoded() == len(tls) * 2 + 3


def test_client_bytes_sent_before_the_answer_is_seen_wait_for_it() -> None:
    """Fed client-first (as a capture file might be), the StartupMessage still decodes after the N."""
    frames = decode([(CLIENT, untyped(SSL_REQUEST_CODE) + startup(user="u")), (SERVER, b"N")])
    assert [f.name for f in frames] == ["SSLRequest", "SSLResponse", "StartupMessage"]


def test_a_direct_tls_hello_is_encrypted_from_the_first_byte() -> None:
    frames = decode([(CLIENT, b"\x16\x03\x01\x00\x10" + b"x" * 16)])
    assert [f.name for f in frames] == [ENCRYPTED]


def test_unknown_type_bytes_are_recorded_and_decoding_goes_on() -> None:
    frames = decode([(SERVER, typed("?", b"abc") + ready())])
    assert [f.name for f in frames] == [UNKNOWN, "ReadyForQuery"]
    assert summarize(frames[0]) == "type byte '?'"


def test_a_malformed_length_is_recorded_once_and_decoding_stops() -> None:
    conv = Conversation()
    frames = conv.feed(SERVER, b"Z\x00\x00\x00\x02I" + ready()) + conv.close()
    assert [f.name for f in frames] == [MALFORMED]
    assert conv.undecoded() == 6 + 6
    frames = decode([(CLIENT, struct.pack("!I", 3) + b"xxxx")])
    assert [f.name for f in frames] == [MALFORMED]


def test_a_connection_cut_mid_message_is_recorded_with_the_bytes_received() -> None:
    message = typed("T", b"x" * 2000)
    frames = decode([(SERVER, ready() + message[:1500])])
    assert [f.name for f in frames] == ["ReadyForQuery", CUT]
    assert frames[-1].length == 1500 and summarize(frames[-1]) == "RowDescription: 1500 of 2005 bytes"
    frames = decode([(SERVER, ready()[:3])])
    assert [(f.name, f.length) for f in frames] == [(CUT, 3)]


def test_a_large_message_keeps_only_a_bounded_prefix() -> None:
    big = typed("N", cstr("SNOTICE") + cstr("M" + "x" * 100_000) + b"\x00")
    conv = Conversation()
    frames = [f for start in range(0, len(big), 1000) for f in conv.feed(SERVER, big[start:start + 1000])]
    assert [f.name for f in frames] == ["NoticeResponse"] and frames[0].length == len(big)
    assert len(frames[0].detail) <= 512
    assert conv.server.buf == b"" and conv.server.skip == 0


# ---------------------------------------------------------------------------------------- properties
event_lists = st.lists(st.tuples(st.sampled_from([CLIENT, SERVER]), st.binary(max_size=300)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(events=event_lists)
def test_random_bytes_never_raise_and_every_frame_summarizes(events: list[tuple[str, bytes]]) -> None:
    conv = Conversation()
    frames = [f for d, b in events for f in conv.feed(d, b)] + conv.close()
    for frame in frames:
        assert isinstance(summarize(frame), str)
        assert frame.length >= 0


def _rechunk(events: list[tuple[str, bytes]], cuts: list[int]) -> list[tuple[str, bytes]]:
    out, k = [], 0
    for direction, data in events:
        pieces, start = [], 0
        while start < len(data):
            size = max(1, cuts[k % len(cuts)]) if cuts else len(data)
            k += 1
            pieces.append(data[start:start + size])
            start += size
        out.extend((direction, piece) for piece in pieces)
    return out


def _plausible_events() -> st.SearchStrategy[list[tuple[str, bytes]]]:
    """Real conversations with random bytes spliced in: framing is exercised, not just rejected."""
    base = scram_connect()
    junk = st.tuples(st.sampled_from([CLIENT, SERVER]), st.binary(max_size=40))
    return st.lists(st.one_of(st.sampled_from(base), junk), max_size=14)


@settings(max_examples=300, deadline=None)
@given(events=st.one_of(event_lists, _plausible_events()),
       cuts=st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=8))
def test_how_the_bytes_are_chunked_does_not_change_the_frames(events: list[tuple[str, bytes]],
                                                               cuts: list[int]) -> None:
    whole = decode(events)
    chunked = decode(_rechunk(events, cuts))
    assert [(f.direction, f.name, f.length, summarize(f)) for f in chunked] == [
        (f.direction, f.name, f.length, summarize(f)) for f in whole]


@settings(max_examples=200, deadline=None)
@given(events=_plausible_events())
def test_lengths_and_undecoded_bytes_account_for_every_byte(events: list[tuple[str, bytes]]) -> None:
    conv = Conversation()
    frames = [f for d, b in events for f in conv.feed(d, b)] + conv.close()
    assert sum(f.length for f in frames) + conv.undecoded() == sum(len(b) for _, b in events)
