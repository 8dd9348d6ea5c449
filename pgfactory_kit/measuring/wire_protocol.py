"""A pure, incremental decoder of the PostgreSQL frontend/backend protocol (version 3), both directions.

``Conversation`` is fed the bytes of one TCP connection as they arrive (``feed("client", data)``,
``feed("server", data)``, in arrival order, in chunks of any size) and returns ``Frame``s: direction,
message name exactly as in the PostgreSQL docs' "Message Formats" (``Query``, ``ReadyForQuery``,
``AuthenticationSASL``...), length and a *detail* that ``summarize`` turns into a short, safe summary.

Promises:
- never raises on any input; the result does not depend on how each direction's bytes are chunked;
- ``length`` is the message's bytes on the wire (type byte included): lengths add up to the bytes fed,
  less those after decoding stopped (counted in ``Conversation.undecoded()``); markers have length 0;
- safe by construction: a password, a SASL payload, an MD5 salt, a cancel key, a bind parameter value or
  a row's values is never kept, not even internally (lengths only); query text near ``PASSWORD`` is masked;
- malformed framing, unknown type bytes and a connection cut mid-message are recorded as such
  (``MALFORMED``, ``UNKNOWN``, ``CUT``); after the server's ``S`` answer to SSLRequest (or ``G`` to
  GSSENCRequest, or a direct TLS hello) one ``ENCRYPTED`` marker is recorded and decoding stops;
- bounded memory per connection: at most ``KEEP`` body bytes of a message are held, whatever its size.
"""
from __future__ import annotations

import re
import struct
from typing import NamedTuple

CLIENT = "client"
SERVER = "server"

MALFORMED = "(malformed)"
UNKNOWN = "(unknown)"
CUT = "(cut mid-message)"
ENCRYPTED = "(encrypted from here)"
MARKERS = (MALFORMED, UNKNOWN, CUT, ENCRYPTED)

KEEP = 512  # body bytes kept per message for its summary
MAX_STARTUP_LENGTH = 10_000  # the server's own limit on an untyped startup-phase packet
MAX_MESSAGE_LENGTH = (1 << 30) - 1  # PostgreSQL's limit on one message
SUMMARY_TEXT = 80  # characters of query text (or any text) a summary shows

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
TLS_HANDSHAKE_BYTE = 0x16  # first byte of a TLS record: a direct-TLS client (PostgreSQL 17+)

FRONTEND_NAMES: dict[int, str] = {ord(k): v for k, v in {
    "B": "Bind", "C": "Close", "d": "CopyData", "c": "CopyDone", "f": "CopyFail", "D": "Describe",
    "E": "Execute", "H": "Flush", "F": "FunctionCall", "p": "PasswordMessage", "P": "Parse", "Q": "Query",
    "S": "Sync", "X": "Terminate"}.items()}
BACKEND_NAMES: dict[int, str] = {ord(k): v for k, v in {
    "R": "Authentication", "K": "BackendKeyData", "2": "BindComplete", "3": "CloseComplete",
    "C": "CommandComplete", "d": "CopyData", "c": "CopyDone", "G": "CopyInResponse", "H": "CopyOutResponse",
    "W": "CopyBothResponse", "D": "DataRow", "I": "EmptyQueryResponse", "E": "ErrorResponse",
    "V": "FunctionCallResponse", "v": "NegotiateProtocolVersion", "n": "NoData", "N": "NoticeResponse",
    "A": "NotificationResponse", "t": "ParameterDescription", "S": "ParameterStatus", "1": "ParseComplete",
    "s": "PortalSuspended", "Z": "ReadyForQuery", "T": "RowDescription"}.items()}
AUTHENTICATION_NAMES: dict[int, str] = {
    0: "AuthenticationOk", 2: "AuthenticationKerberosV5", 3: "AuthenticationCleartextPassword",
    5: "AuthenticationMD5Password", 7: "AuthenticationGSS", 8: "AuthenticationGSSContinue",
    9: "AuthenticationSSPI", 10: "AuthenticationSASL", 11: "AuthenticationSASLContinue",
    12: "AuthenticationSASLFinal"}
# Which of the four 'p' messages the client sends depends on the server's last authentication request.
_PASSWORD_REPLY = {3: "PasswordMessage", 5: "PasswordMessage", 7: "GSSResponse", 8: "GSSResponse",
                   9: "GSSResponse", 10: "SASLInitialResponse", 11: "SASLResponse"}
TRANSACTION_STATUS = {"I": "idle", "T": "in transaction", "E": "failed transaction"}

# Query text with a password literal after it (ALTER ROLE ... PASSWORD '...', OPTIONS (password '...')).
_PASSWORD_WORD = re.compile(rb"password", re.IGNORECASE)
_PASSWORD_WORD_TEXT = re.compile(r"password", re.IGNORECASE)
_MASKED_AFTER = re.compile(r"\s*(?:=\s*)?'\*\*\*'")
_PASSWORD_LITERAL = re.compile(r"(password\s*(?:=\s*)?)(E?'(?:[^']|'')*(?:'|$)|\$[^$]*\$.*?(?:\$[^$]*\$|$))",
                               re.IGNORECASE | re.DOTALL)


class Frame(NamedTuple):
    """One decoded message. ``detail`` is what ``summarize`` needs: safe bytes (a bounded body prefix,
    or only the few bytes a summary shows) or an already-made summary string."""

    direction: str
    name: str
    length: int
    detail: bytes | str


# ---------------------------------------------------------------------------------------- conversation
class Conversation:
    """Both directions of one connection; messages come out in the order their last byte was fed."""

    def __init__(self) -> None:
        self.client = _Stream(self, CLIENT, untyped=True)
        self.server = _Stream(self, SERVER, untyped=False)
        self.auth_code: int | None = None  # the server's last authentication request
        self.encrypted = False
        self._answer_for: str | None = None  # "SSLRequest"/"GSSENCRequest" the server must answer
        self._held = b""  # client bytes sent after such a request, decoded once the answer is known

    def feed(self, direction: str, data: bytes) -> list[Frame]:
        """Decode ``data`` arriving from ``direction`` ("client" or "server")."""
        out: list[Frame] = []
        try:
            if direction == CLIENT:
                if self._answer_for is not None and not self.encrypted:
                    self._held += bytes(data)
                else:
                    self.client.feed(bytes(data), out)
            else:
                self.server.feed(bytes(data), out)
        except Exception as exc:  # a decoder bug must never break the tap: record it and stop decoding
            out.append(Frame(direction, MALFORMED, 0, f"decoder stopped: {type(exc).__name__}"))
            self.client.stopped = self.server.stopped = True
        return out

    def close(self) -> list[Frame]:
        """The connection ended: record a message cut in the middle in either direction."""
        out: list[Frame] = []
        try:
            if self._held:
                out.append(Frame(CLIENT, CUT, len(self._held),
                                 f"{len(self._held)} bytes sent before the server answered {self._answer_for}"))
                self._held = b""
            self.client.close(out)
            self.server.close(out)
        except Exception as exc:
            out.append(Frame(CLIENT, MALFORMED, 0, f"decoder stopped: {type(exc).__name__}"))
        return out

    def undecoded(self) -> int:
        """Bytes passed on without decoding (after an encryption answer or a malformed frame)."""
        return self.client.undecoded + self.server.undecoded

    # ----------------------------------------------------------------- called by the streams
    def _await_answer(self, request: str) -> None:
        self._answer_for = request
        self.server.answer_for = request

    def _answered(self, encrypt: bool, out: list[Frame]) -> None:
        """The server answered SSLRequest/GSSENCRequest: go encrypted, or decode the held client bytes."""
        self._answer_for = None
        if encrypt:
            self.encrypted = True
            out.append(Frame(SERVER, ENCRYPTED, 0, "TLS/GSS from here on: not decoded"))
            self.client.stopped = self.server.stopped = True
            self.client.undecoded += len(self._held)
            self._held = b""
            return
        held, self._held = self._held, b""
        if held:
            self.client.feed(held, out)


# ---------------------------------------------------------------------------------------- one direction
class _Stream:
    """One direction's framing state: an unfinished header or body prefix, or a large body being skipped."""

    __slots__ = ("conv", "side", "names", "plain", "untyped", "answer_for", "buf", "skip", "pending", "stopped",
                 "undecoded")

    def __init__(self, conv: Conversation, side: str, *, untyped: bool) -> None:
        self.conv = conv
        self.side = side
        self.names = FRONTEND_NAMES if side == CLIENT else BACKEND_NAMES
        self.plain = _PLAIN_CLIENT if side == CLIENT else _PLAIN_SERVER  # the fast path's kinds
        self.untyped = untyped  # client before its StartupMessage: length-prefixed, no type byte
        self.answer_for: str | None = None  # server: next byte is the one-byte answer to this request
        self.buf = b""
        self.skip = 0  # body bytes of a large message still to come
        self.pending: tuple[int, int, bytes] | None = None  # (type byte, wire length, kept prefix)
        self.stopped = False
        self.undecoded = 0  # bytes seen after decoding stopped (encrypted or malformed)

    def feed(self, data: bytes, out: list[Frame]) -> None:
        if self.stopped:
            self.undecoded += len(data)
            return
        if self.skip:
            if len(data) < self.skip:
                self.skip -= len(data)
                return
            data = data[self.skip:]
            self.skip = 0
            if self.pending is not None:
                kind, length, prefix = self.pending
                self.pending = None
                out.append(self._typed(kind, prefix, length))
        if self.buf:
            data = self.buf + data
            self.buf = b""
        pos, end = 0, len(data)
        while pos < end and not self.stopped:
            if self.answer_for is not None:
                pos = self._answer(data, pos, out)
            elif self.untyped:
                nxt = self._untyped(data, pos, out)
                if nxt < 0:
                    break
                pos = nxt
                if self.conv._answer_for is not None and self.side == CLIENT:
                    self.conv._held += data[pos:]  # wait for the server's answer before reading on
                    return
            else:
                pos = self._typed_run(data, pos, end, out)
                if pos < 0:  # a large message is being skipped, or decoding stopped
                    return
                break
        if pos < end and not self.stopped:
            self.buf = data[pos:]
        elif self.stopped and pos < end:
            self.undecoded += end - pos

    def close(self, out: list[Frame]) -> None:
        if self.stopped:
            return
        if self.pending is not None:
            kind, length, _ = self.pending
            received = length - self.skip
            out.append(Frame(self.side, CUT, received, f"{self._name(kind)}: {received} of {length} bytes"))
        elif self.buf:
            what = "startup-phase message" if self.untyped or len(self.buf) < 1 else self._name(self.buf[0])
            out.append(Frame(self.side, CUT, len(self.buf), f"{what}: {len(self.buf)} bytes, then the end"))
        self.buf, self.pending, self.skip = b"", None, 0

    def _typed_run(self, data: bytes, pos: int, end: int, out: list[Frame]) -> int:
        """Decode complete typed messages from ``pos``; returns where an incomplete one starts, or -1."""
        plain, append, side = self.plain, out.append, self.side
        while end - pos >= 5:
            kind = data[pos]
            length = _LENGTH(data, pos + 1)[0]
            if length < 4 or length > MAX_MESSAGE_LENGTH:
                self._malformed(out, end - pos, f"type byte {_char(kind)}, length field {length}")
                return -1
            stop = pos + 1 + length
            if stop > end:
                if length - 4 > KEEP and end - pos >= 5 + KEEP:  # large: keep a prefix, skip the rest
                    self.pending = (kind, length + 1, data[pos + 5:pos + 5 + KEEP])
                    self.skip = stop - end
                    return -1
                return pos
            fast = plain.get(kind)
            if fast is not None:  # most messages: a name and a bounded body prefix, nothing else to decide
                name, keep = fast
                append(_NEW(Frame, (side, name, length + 1, data[pos + 5:stop if length - 4 <= keep else
                                                                   pos + 5 + keep])))
            else:
                append(self._typed(kind, data[pos + 5:stop if length - 4 <= KEEP else pos + 5 + KEEP], length + 1))
            pos = stop
        return pos

    # ----------------------------------------------------------------- the pieces
    def _malformed(self, out: list[Frame], nbytes: int, why: str) -> None:
        out.append(Frame(self.side, MALFORMED, 0, f"{why}: decoding stops here"))
        self.stopped = True
        self.undecoded += nbytes

    def _answer(self, data: bytes, pos: int, out: list[Frame]) -> int:
        request, self.answer_for = self.answer_for, None
        byte = data[pos]
        name = "SSLResponse" if request == "SSLRequest" else "GSSENCResponse"
        if byte in (ord("S"), ord("G")):
            out.append(Frame(SERVER, name, 1, f"{chr(byte)}: encryption accepted"))
            self.conv._answered(True, out)
            self.undecoded += len(data) - pos - 1
            return len(data)
        if byte == ord("N"):
            out.append(Frame(SERVER, name, 1, "N: not accepted, the conversation stays in clear"))
            self.conv._answered(False, out)
            return pos + 1
        self.conv._answered(False, out)  # e.g. an ErrorResponse from the server instead of an answer
        return pos

    def _untyped(self, data: bytes, pos: int, out: list[Frame]) -> int:
        """A startup-phase packet at ``pos``; returns where the next starts, or -1 when incomplete."""
        if data[pos] == TLS_HANDSHAKE_BYTE:
            out.append(Frame(CLIENT, ENCRYPTED, 0, "direct TLS hello: not decoded"))
            self.conv.encrypted = True
            self.stopped = self.conv.server.stopped = True
            self.undecoded += len(data) - pos
            return len(data)
        if len(data) - pos < 4:
            return -1
        length = int.from_bytes(data[pos:pos + 4], "big")
        if not 8 <= length <= MAX_STARTUP_LENGTH:
            self._malformed(out, len(data) - pos, f"startup-phase length {length} out of range")
            return len(data)
        if len(data) - pos < length:
            return -1
        code = int.from_bytes(data[pos + 4:pos + 8], "big")
        body = data[pos + 8:pos + length]
        if code == SSL_REQUEST_CODE:
            out.append(Frame(CLIENT, "SSLRequest", length, "asks for TLS"))
            self.conv._await_answer("SSLRequest")
        elif code == GSSENC_REQUEST_CODE:
            out.append(Frame(CLIENT, "GSSENCRequest", length, "asks for GSSAPI encryption"))
            self.conv._await_answer("GSSENCRequest")
        elif code == CANCEL_REQUEST_CODE:
            pid = int.from_bytes(body[:4], "big") if len(body) >= 4 else 0
            out.append(Frame(CLIENT, "CancelRequest", length, f"cancel backend pid {pid} (key not shown)"))
        elif code >> 16 == 1234:
            out.append(Frame(CLIENT, UNKNOWN, length, f"request code 1234/{code & 0xFFFF}"))
        else:
            out.append(Frame(CLIENT, "StartupMessage", length, _startup_summary(code, body)))
            self.untyped = False
        return pos + length

    def _name(self, kind: int) -> str:
        if kind == 0x70 and self.side == CLIENT:  # 'p'
            return _PASSWORD_REPLY.get(self.conv.auth_code or 3, "PasswordMessage")
        return self.names.get(kind, UNKNOWN)

    def _typed(self, kind: int, body: bytes, length: int) -> Frame:
        """A complete typed message: its name and the detail that is safe to keep."""
        side = self.side
        name = self.names.get(kind)
        if name is None:
            return Frame(side, UNKNOWN, length, f"type byte {_char(kind)}")
        if side == SERVER:
            if kind == 0x52:  # 'R': by sub-code; keep the mechanism list, never a salt or SASL data
                code = int.from_bytes(body[:4], "big") if len(body) >= 4 else -1
                self.conv.auth_code = code
                name = AUTHENTICATION_NAMES.get(code, "Authentication")
                if code == 10:
                    return Frame(side, name, length, b"\x00" + body[4:])
                if name == "Authentication":
                    return Frame(side, name, length, f"unknown authentication code {code}")
                return Frame(side, name, length, _secret_summary(code, length))
            if kind == 0x44:  # DataRow: the column count only
                return Frame(side, name, length, body[:2])
            if kind in _SERVER_SECRET_KINDS:
                return Frame(side, name, length, _server_secret_summary(kind, body, length))
            return Frame(side, name, length, body)
        if kind == 0x70:  # 'p': password / SASL / GSS data is never kept
            name = self._name(kind)
            if name == "SASLInitialResponse":
                mechanism = body.split(b"\x00", 1)[0][:40].decode("ascii", "replace")
                return Frame(side, name, length, f"mechanism {mechanism}, SASL data not shown")
            return Frame(side, name, length, f"{length - 5} bytes, not shown")
        if kind in (0x51, 0x50):  # Query, Parse: mask a password literal before the text is kept
            if _PASSWORD_WORD.search(body):
                return Frame(side, name, length, _masked_query(name, body))
            return Frame(side, name, length, body)
        if kind in _CLIENT_SECRET_KINDS:
            return Frame(side, name, length, _client_secret_summary(kind, body, length))
        return Frame(side, name, length, body)


_SERVER_SECRET_KINDS = frozenset(b"KdVA")  # BackendKeyData, CopyData, FunctionCallResponse, Notification
_CLIENT_SECRET_KINDS = frozenset(b"BdF")  # Bind, CopyData, FunctionCall
# Kinds whose frame is just (name, body prefix): the hot path. DataRow keeps only its column count.
_PLAIN_SERVER = {k: (v, 2 if k == 0x44 else KEEP) for k, v in BACKEND_NAMES.items() if k not in b"RKdVA"}
_PLAIN_CLIENT = {k: (v, KEEP) for k, v in FRONTEND_NAMES.items() if k not in b"pQPBdF"}
_LENGTH = struct.Struct("!I").unpack_from
_NEW = tuple.__new__


# ---------------------------------------------------------------------------------------- summaries
def summarize(frame: Frame) -> str:
    """A short, safe summary of ``frame`` (never raises)."""
    detail = frame.detail
    if isinstance(detail, str):
        return detail
    try:
        fn = _SUMMARIES.get((frame.direction, frame.name))
        return fn(detail, frame.length) if fn is not None else ""
    except Exception:
        return "malformed body"


def _char(kind: int) -> str:
    return repr(chr(kind)) if 32 <= kind < 127 else f"0x{kind:02x}"


def _text(raw: bytes, limit: int = SUMMARY_TEXT) -> str:
    text = raw.decode("utf-8", "replace").replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cstrings(body: bytes) -> list[bytes]:
    return body.split(b"\x00")


def _masked_query(name: str, body: bytes) -> str:
    """Query/Parse text with every literal after ``password`` masked; when a ``password`` is followed
    by anything but a masked literal, the text is cut right after that word (nothing after it shown)."""
    fields = body.split(b"\x00", 2)
    raw = fields[1] if name == "Parse" and len(fields) > 1 else fields[0]
    text = _PASSWORD_LITERAL.sub(lambda m: m.group(1) + "'***'", raw.decode("utf-8", "replace"))
    for match in _PASSWORD_WORD_TEXT.finditer(text):
        if not _MASKED_AFTER.match(text, match.end()):
            text = text[:match.end()] + " …"
            break
    shown = _text(text.encode())
    if name == "Parse":
        return f"statement {_text(fields[0], 30)!r}: {shown}"
    return shown


def _startup_summary(code: int, body: bytes) -> str:
    parts = [f"protocol {code >> 16}.{code & 0xFFFF}"]
    fields = _cstrings(body)
    for key, value in zip(fields[0::2], fields[1::2], strict=False):
        if not key:
            break
        shown = "(not shown)" if b"password" in key.lower() else _text(value, 40)
        parts.append(f"{_text(key, 30)}={shown}")
    return " ".join(parts)


def _secret_summary(code: int, length: int) -> str:
    if code == 5:
        return "salt not shown"
    if code in (8, 11, 12):
        return f"{length - 9} bytes of authentication data, not shown"
    return ""


def _server_secret_summary(kind: int, body: bytes, length: int) -> str:
    if kind == 0x4B:  # BackendKeyData
        return f"backend pid {int.from_bytes(body[:4], 'big')} (cancel key not shown)"
    if kind == 0x41:  # NotificationResponse
        fields = _cstrings(body[4:])
        payload = len(fields[1]) if len(fields) > 1 else 0
        return f"channel {_text(fields[0], 40)}, payload {payload} bytes"
    return f"{length - 5} bytes"


def _client_secret_summary(kind: int, body: bytes, length: int) -> str:
    if kind == 0x42:  # Bind: portal, statement, parameter lengths, never values
        fields = body.split(b"\x00", 2)
        if len(fields) < 3:
            return "malformed body"
        rest = fields[2]
        nformats = int.from_bytes(rest[:2], "big")
        pos = 2 + 2 * nformats
        nparams = int.from_bytes(rest[pos:pos + 2], "big")
        pos += 2
        lengths = []
        for _ in range(min(nparams, 1000)):
            size = int.from_bytes(rest[pos:pos + 4], "big", signed=True)
            pos += 4
            if size > 0:
                pos += size
            lengths.append("NULL" if size < 0 else str(size))
        shown = ", ".join(lengths[:8]) + (", …" if len(lengths) > 8 else "")
        return (f"portal {_text(fields[0], 30)!r} statement {_text(fields[1], 30)!r}, "
                f"{nparams} parameters (lengths {shown}; values not shown)")
    if kind == 0x46:  # FunctionCall
        return f"function oid {int.from_bytes(body[:4], 'big')}, arguments not shown"
    return f"{length - 5} bytes"


def _query(body: bytes, length: int) -> str:
    return _text(body.split(b"\x00", 1)[0])


def _parse(body: bytes, length: int) -> str:
    fields = body.split(b"\x00", 2)
    return f"statement {_text(fields[0], 30)!r}: {_text(fields[1]) if len(fields) > 1 else ''}"


def _portal_name(body: bytes, length: int) -> str:
    kind = {ord("S"): "statement", ord("P"): "portal"}.get(body[0], "?") if body else "?"
    name = _text(body[1:].split(b"\x00", 1)[0], 30)
    return f"{kind} {name!r}"


def _execute(body: bytes, length: int) -> str:
    fields = body.split(b"\x00", 1)
    rows = int.from_bytes(fields[1][:4], "big") if len(fields) > 1 else 0
    return f"portal {_text(fields[0], 30)!r}, {'all rows' if rows == 0 else f'at most {rows} rows'}"


def _copy_fail(body: bytes, length: int) -> str:
    return _text(body.split(b"\x00", 1)[0])


def _sasl_mechanisms(body: bytes, length: int) -> str:
    names = [_text(m, 40) for m in _cstrings(body[1:]) if m]
    return "mechanisms " + ", ".join(names)


def _parameter_status(body: bytes, length: int) -> str:
    fields = _cstrings(body)
    return f"{_text(fields[0], 40)}={_text(fields[1], 40) if len(fields) > 1 else ''}"


def _ready_for_query(body: bytes, length: int) -> str:
    status = chr(body[0]) if body else "?"
    return f"{status} ({TRANSACTION_STATUS.get(status, 'unknown status')})"


def _row_description(body: bytes, length: int) -> str:
    count = int.from_bytes(body[:2], "big")
    names, pos = [], 2
    while len(names) < min(count, 6) and pos < len(body):
        stop = body.find(b"\x00", pos)
        if stop < 0:
            break
        names.append(_text(body[pos:stop], 30))
        pos = stop + 19  # name, NUL, then 18 bytes of table oid, column, type oid, size, modifier, format
    more = ", …" if count > len(names) else ""
    return f"{count} column{'s' if count != 1 else ''}: {', '.join(names)}{more}"


def _data_row(body: bytes, length: int) -> str:
    count = int.from_bytes(body[:2], "big")
    return f"{count} column{'s' if count != 1 else ''}, {length - 7} bytes (values not shown)"


def _command_complete(body: bytes, length: int) -> str:
    return _text(body.split(b"\x00", 1)[0])


_SHOWN_FIELDS = {"S": "", "C": "", "M": ""}  # severity, SQLSTATE code, message; never detail or query


def _error_fields(body: bytes, length: int) -> str:
    fields = {}
    for field in _cstrings(body):
        if field and chr(field[0]) in _SHOWN_FIELDS and chr(field[0]) not in fields:
            fields[chr(field[0])] = _text(field[1:], 120)
    return " ".join(v for v in (fields.get("S"), fields.get("C"), fields.get("M")) if v)


def _parameter_description(body: bytes, length: int) -> str:
    return f"{int.from_bytes(body[:2], 'big')} parameters"


def _negotiate(body: bytes, length: int) -> str:
    minor = int.from_bytes(body[:4], "big")
    count = int.from_bytes(body[4:8], "big")
    return f"newest minor version 3.{minor}, {count} unrecognized options"


def _copy_response(body: bytes, length: int) -> str:
    fmt = "binary" if body[:1] == b"\x01" else "text"
    return f"{fmt}, {int.from_bytes(body[1:3], 'big')} columns"


def _nothing(body: bytes, length: int) -> str:
    return ""


_SUMMARIES = {
    (CLIENT, "Query"): _query, (CLIENT, "Parse"): _parse, (CLIENT, "Describe"): _portal_name,
    (CLIENT, "Close"): _portal_name, (CLIENT, "Execute"): _execute, (CLIENT, "CopyFail"): _copy_fail,
    (CLIENT, "Sync"): _nothing, (CLIENT, "Flush"): _nothing, (CLIENT, "Terminate"): _nothing,
    (CLIENT, "CopyDone"): _nothing,
    (SERVER, "AuthenticationSASL"): _sasl_mechanisms, (SERVER, "ParameterStatus"): _parameter_status,
    (SERVER, "ReadyForQuery"): _ready_for_query, (SERVER, "RowDescription"): _row_description,
    (SERVER, "DataRow"): _data_row, (SERVER, "CommandComplete"): _command_complete,
    (SERVER, "ErrorResponse"): _error_fields, (SERVER, "NoticeResponse"): _error_fields,
    (SERVER, "ParameterDescription"): _parameter_description, (SERVER, "NegotiateProtocolVersion"): _negotiate,
    (SERVER, "CopyInResponse"): _copy_response, (SERVER, "CopyOutResponse"): _copy_response,
    (SERVER, "CopyBothResponse"): _copy_response,
}


def decode(events: list[tuple[str, bytes]], *, close: bool = True) -> list[Frame]:
    """Decode a whole recorded conversation: ``[(direction, bytes), ...]`` in arrival order."""
    conv = Conversation()
    frames: list[Frame] = []
    for direction, data in events:
        frames.extend(conv.feed(direction, data))
    if close:
        frames.extend(conv.close())
    return frames
