"""35: the interactive wizard (tools/c2d-wizard, docs/wizard.md) through a
pseudo-terminal, as an installer types: a wrong answer is re-asked with the
reason, < goes back a step and the previous answer is the default, and
cancelling after step 4 (cancel, Ctrl-C) removes the recorder the wizard
made (checked through the API), exit code 130. Ctrl-D at the first
question cancels with nothing made.

pexpect is not installed: Term below is the little of it we need (pty.fork,
select, os.read)."""

import os
import pty
import re
import select
import time

import pytest

from c2dtest import TestTimeout as Timeout
from test_31_pairing import cabroker, capki  # noqa: F401 (fixtures)
from test_34_wizard import Installer

SERIAL = "SN-WIZ-PTY"


class Term:
    """A program on a pseudo-terminal: expect(regex) waits for output,
    send(line) types a line."""

    def __init__(self, cmd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(str(cmd[0]), [str(c) for c in cmd])
            finally:
                os._exit(127)
        self.buf = ""  # output not yet matched
        self.all = ""
        self.status = None

    def _read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            b = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            b = b""
        if not b:
            return None
        t = b.decode(errors="replace").replace("\r\n", "\n")
        self.buf += t
        self.all += t
        return True

    def expect(self, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self._read(min(left, 1.0)) is None and not re.search(pattern,
                                                                                   self.buf):
                raise Timeout("no %r in the wizard's output:\n%s" % (pattern, self.all[-3000:]))

    def send(self, line):
        os.write(self.fd, (line + "\n").encode())

    def send_raw(self, b):
        os.write(self.fd, b)

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.1):
                    pass
                self.status = os.waitstatus_to_exitcode(st)
                return self.status
            self._read(0.2)
        raise Timeout("the wizard still runs:\n" + self.all[-3000:])

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def term():
    made = []

    def start(cmd):
        t = Term(cmd)
        made.append(t)
        return t
    yield start
    for t in made:
        t.close()


def to_step4(t, sp):
    """Answers steps 1-3 with the defaults (serial SERIAL), up to the code."""
    t.expect(r"Serial number: ")
    t.send(SERIAL)
    t.expect(r"Model: ")
    t.send("generic-nvr-4ch")
    for q in ("Device name", "Client", "Site", "Virtual disk", "Drive name", "Retention",
              "When full"):
        t.expect(q + r"[^\n]*: ")
        t.send("")
    for n in range(1, 5):
        for q in ("name", "cloud backup", "AI algorithms"):
            t.expect(r"Channel %d %s[^\n]*: " % (n, q))
            t.send("")
    t.expect(r"Create the recorder and get a pairing code\? \(y/n\) \[y\]: ")
    t.send("")
    code = t.expect(r"Pairing code: (\S{4}-\S{4})").group(1)
    recs = sp.ok("GET", "/api/v1/recorders")["items"]
    assert [r["serial"] for r in recs] == [SERIAL], recs
    return code, recs[0]


def nothing_left(sp):
    assert sp.ok("GET", "/api/v1/recorders")["items"] == []
    vd = sp.ok("GET", "/api/v1/vdisks/%d" % sp.vdisk["id"])
    assert vd["state"] == "pending" and vd["recorder_id"] is None, vd


@pytest.mark.timeout(180)
def test_wizard_pty_back_invalid_cancel(capki, cabroker, tmp_path, term):  # noqa: F811
    sp = Installer(capki, tmp_path)
    t = term(sp.wizard_cmd())
    # step 1: a bad serial is re-asked with the reason
    t.expect(r"Step 1/5: device details")
    t.expect(r"Serial number: ")
    t.send("-bad")
    t.expect(r"! a serial is 1 to 64 of A-Z a-z 0-9 _ \. - and does not start with \. or -")
    t.expect(r"Serial number: ")
    t.send(SERIAL)
    t.expect(r"Model: ")
    t.send("nope")
    t.expect(r"! no model 'nope'")
    t.expect(r"Model: ")
    t.send("generic-nvr-4ch")
    t.expect(r"Device name \[generic-nvr-4ch %s\]: " % SERIAL)
    t.send("Shop NVR")
    t.expect(r"1\) Bakery <bakery@example.com>")
    t.expect(r"Client \[Bakery <bakery@example.com>\]: ")
    t.send("")
    t.expect(r"Site \[Main street\]: ")
    t.send("")
    # step 2, then < at its first question: back to step 1, answers kept
    t.expect(r"Step 2/5: virtual drive details")
    t.expect(r"Virtual disk \[Bakery 64M\]: ")
    t.send("<")
    t.expect(r"Step 1/5: device details")
    t.expect(r"Serial number \[%s\]: " % SERIAL)
    t.send("")
    t.expect(r"Model \[generic-nvr-4ch\]: ")
    t.send("")
    t.expect(r"Device name \[Shop NVR\]: ")
    # < inside a step goes to the previous question
    t.send("<")
    t.expect(r"Model \[generic-nvr-4ch\]: ")
    t.send("")
    t.expect(r"Device name \[Shop NVR\]: ")
    t.send("")
    t.expect(r"Client \[[^\]]*\]: ")
    t.send("")
    t.expect(r"Site \[Main street\]: ")
    t.send("")
    t.expect(r"Virtual disk \[Bakery 64M\]: ")
    t.send("")
    t.expect(r"Drive name \[Bakery 64M\]: ")
    t.send("Shop cloud")
    t.expect(r"Retention \(days, at most 30\) \[30\]: ")
    t.send("99")
    t.expect(r"! the subscription keeps at most 30 days")
    t.expect(r"Retention \(days, at most 30\) \[30\]: ")
    t.send("10")
    t.expect(r"When full: overwrite or stop \[overwrite\]: ")
    t.send("sometimes")
    t.expect(r"! overwrite \(the oldest video makes room\) or stop")
    t.send("stop")
    # step 3: an algorithm the client's AI subscription does not allow
    t.expect(r"Step 3/5: channels \(4\)")
    t.expect(r"Channel 1 name \[Channel 1\]: ")
    t.send("")
    t.expect(r"Channel 1 cloud backup \(y/n\) \[y\]: ")
    t.send("maybe")
    t.expect(r"! answer yes or no")
    t.send("y")
    t.expect(r"Channel 1 AI algorithms \[-\]: ")
    t.send("face")
    t.expect(r"! the client's AI subscriptions do not allow face \(allowed: person, vehicle\)")
    t.send("person")
    for n in range(2, 5):
        t.expect(r"Channel %d name \[Channel %d\]: " % (n, n))
        t.send("x" * 65 if n == 2 else "")
        if n == 2:
            t.expect(r"! the name is 65 bytes, at most 64")
            t.send("Door")
        t.expect(r"Channel %d cloud backup" % n)
        t.send("")
        t.expect(r"Channel %d AI algorithms \[-\]: " % n)
        t.send("")
    # step 4 makes the recorder and a code
    t.expect(r"Step 4/5: device to cloud connection")
    t.expect(r"virtual disk Bakery 64M: Shop cloud, 10 days, stop")
    t.expect(r"channel 2: Door, backup on, AI -")
    t.expect(r"Create the recorder and get a pairing code\? \(y/n\) \[y\]: ")
    t.send("")
    t.expect(r"Pairing code: (\S{4}-\S{4})")
    t.expect(r"c2d-agent pair -c /etc/c2d/agent.json --code \S{4}-\S{4}")
    recs = sp.ok("GET", "/api/v1/recorders")["items"]
    assert len(recs) == 1 and recs[0]["name"] == "Shop NVR", recs
    chans = sp.ok("GET", "/api/v1/channels?recorder_id=%d" % recs[0]["id"])["items"]
    assert [c["name"] for c in chans] == ["Channel 1", "Door", "Channel 3", "Channel 4"], chans
    # < after step 4: the recorder goes, back to step 3 with the answers kept
    t.expect(r"Press Enter once the code is typed on the recorder: ")
    t.send("<")
    t.expect(r"removed recorder %d \(Shop NVR, serial %s\) and its 4 channel\(s\)"
             % (recs[0]["id"], SERIAL))
    nothing_left(sp)
    t.expect(r"Step 3/5")
    t.expect(r"Channel 1 name \[Channel 1\]: ")
    t.send("")
    t.expect(r"Channel 1 cloud backup \(y/n\) \[y\]: ")
    t.send("")
    t.expect(r"Channel 1 AI algorithms \[person\]: ")
    t.send("")
    for n in range(2, 5):
        t.expect(r"Channel %d name \[%s\]: " % (n, "Door" if n == 2 else "Channel %d" % n))
        t.send("")
        t.send("")
        t.send("")
    t.expect(r"Create the recorder and get a pairing code\?[^\n]*: ")
    t.send("y")
    t.expect(r"Pairing code: ")
    t.expect(r"Press Enter once the code is typed on the recorder: ")
    recs = sp.ok("GET", "/api/v1/recorders")["items"]
    assert len(recs) == 1, recs
    # cancel after step 4: nothing is left
    t.send("cancel")
    assert t.wait() == 130, t.all[-2000:]
    assert re.search(r"removed recorder %d" % recs[0]["id"], t.all), t.all[-2000:]
    assert "c2d-wizard: cancelled" in t.all
    nothing_left(sp)


@pytest.mark.timeout(180)
def test_wizard_pty_ctrl_c_ctrl_d(capki, cabroker, tmp_path, term):  # noqa: F811
    sp = Installer(capki, tmp_path)
    # Ctrl-D at the first question: cancelled, nothing made
    t = term(sp.wizard_cmd())
    t.expect(r"Serial number: ")
    t.send_raw(b"\x04")
    assert t.wait() == 130, t.all
    assert "nothing was created" in t.all
    nothing_left(sp)
    # Ctrl-C while step 5 waits for the recorder: the recorder goes
    t = term(sp.wizard_cmd("--timeout", "120"))
    code, rec = to_step4(t, sp)
    t.expect(r"Press Enter once the code is typed on the recorder: ")
    t.send("")
    t.expect(r"waiting for the recorder to come online")
    time.sleep(1)
    t.send_raw(b"\x03")
    assert t.wait() == 130, t.all[-2000:]
    assert "removed recorder %d" % rec["id"] in t.all, t.all[-2000:]
    nothing_left(sp)
