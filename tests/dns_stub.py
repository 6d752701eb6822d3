"""A real DNS server for the tests: UDP on a loopback port of its own, in a thread, answering TXT queries from
a table it is given (a DKIM key at sel._domainkey.example.nl, say) and NXDOMAIN for every other name.

The service reaches it the way it reaches any resolver: INVITES_DNS_RESOLVER set to `address`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset


class DnsStub:
    """Answers TXT queries for the names in `records` (lowercase, no trailing dot); records every question."""

    def __init__(self, records: Mapping[str, str]) -> None:
        self.records = {name.lower().rstrip("."): value for name, value in records.items()}
        self.questions: list[str] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        # Woken now and then to see whether it should stop.
        self._socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()
        return f"{host}:{port}"

    def start(self) -> DnsStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            self._socket.sendto(self.answer(wire), peer)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.questions.append(name)
        value = self.records.get(name)
        if value is None or question.rdtype != dns.rdatatype.TXT:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        # One TXT string holds at most 255 bytes; a 2048-bit key's record is split, as DNS hosts do.
        data = value.encode()
        strings = [data[i : i + 255] for i in range(0, len(data), 255)]
        rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
        response.answer.append(dns.rrset.from_rdata(question.name, 60, rdata))
        return response.to_wire()


@contextmanager
def dns_stub(records: Mapping[str, str]) -> Iterator[DnsStub]:
    stub = DnsStub(records).start()
    try:
        yield stub
    finally:
        stub.stop()
