#!/usr/bin/env python3
"""Drive headless Chromium over the DevTools protocol on a pipe, for tests of pages that change
while they are open (the dashboard's live pages).

    python3 scripts/chromium-cdp.py CHROMIUM URL

Chromium starts with --remote-debugging-pipe (the protocol on file descriptors 3 and 4, messages
separated by NUL) and opens URL. Then one JSON command per line on stdin, one JSON answer per line
on stdout:

    {"eval": "EXPRESSION"}                  -> {"value": ...}         (or {"error": "..."})
    {"wait": "EXPRESSION", "timeout": 30}   -> {"value": ..., "seconds": s} once the value is
                                                truthy, polled every 0.2 s; {"error": "timeout",
                                                "value": last} when it never is
Chromium is stopped when stdin closes.
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Chromium:
    def __init__(self, binary, url):
        def high(fd):   # a copy at 10 or above: mapping the two onto 3 and 4 in the child cannot clash
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return moved
        to_r, to_w = map(high, os.pipe())
        from_r, from_w = map(high, os.pipe())

        def on_fds_3_and_4():
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.profile = tempfile.mkdtemp(prefix="tl-cdp-")
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--hide-scrollbars", "--user-data-dir=" + self.profile, "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=on_fds_3_and_4, close_fds=False)
        os.close(to_r)
        os.close(from_w)
        self.send_fd, self.receive_fd = to_w, from_r
        self.buffer = b""
        self.next_id = 0
        self.session = None
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        self.call("Page.navigate", {"url": url})

    def call(self, method, params=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        while True:   # events and other answers are passed over
            answer = self.receive()
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(answer["error"].get("message", str(answer["error"])))
                return answer.get("result", {})

    def receive(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.receive_fd, 65536)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "exception") + ": " + json.dumps(result["exceptionDetails"].get("exception", {}).get("description", "")))
        return result.get("result", {}).get("value")

    def close(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    browser = Chromium(sys.argv[1], sys.argv[2])
    try:
        for line in sys.stdin:
            command = json.loads(line)
            try:
                if "eval" in command:
                    answer = {"value": browser.evaluate(command["eval"])}
                else:
                    start, value = time.monotonic(), None
                    while True:
                        try:
                            value = browser.evaluate(command["wait"])
                        except RuntimeError:
                            value = None   # the page is still loading or being replaced
                        if value or time.monotonic() - start > command.get("timeout", 30):
                            break
                        time.sleep(0.2)
                    answer = {"value": value, "seconds": round(time.monotonic() - start, 2)}
                    if not value:
                        answer["error"] = "timeout"
            except Exception as e:   # one command's failure is its answer, not the end
                answer = {"error": str(e)}
            print(json.dumps(answer), flush=True)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
