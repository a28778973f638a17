"""A supervisor program for the tests: `python -m tests.unit.supervisor.tree SETUP_JSON`.

Its dispatcher routes ("echo", x) from any child to child "b", ("flood", x) back to its
sender as ("flooded", x), sends other answers to
the events file, and records ready/exited events there, one JSON line each.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import attrs

from compute_endpoint.supervisor.control import SUPERVISOR, Forgive, StartChild, StopChild
from compute_endpoint.supervisor.liveness import Liveness
from compute_endpoint.supervisor.spec import ChildSpec, Restart, RestartPolicy
from compute_endpoint.supervisor.supervisor import Supervisor


class RecordingDispatcher:
    def __init__(self, events_path: str, commands_path: str | None = None, child_config: dict | None = None,
                 forgive: tuple[str, ...] = ()):
        self.events = open(events_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the tree
        self.forgive = forgive  # children whose every crash the work is blamed for
        # Lines the test appends, {"start": NAME, "target": ...} or {"stop": NAME}: run-time children.
        self.commands_path, self.commands_done, self.child_config = commands_path, 0, child_config or {}

    def record(self, **event) -> None:
        self.events.write(json.dumps(event) + "\n")

    def route(self, source, message):
        kind, value = message
        if kind == "echo":
            return [("b", message)]
        if kind == "flood":
            return [(source, ("flooded", value))]
        self.record(event="message", source=source, kind=kind, value=value)
        return []

    def child_ready(self, name):
        self.record(event="ready", name=name)
        return []

    def child_exited(self, name):
        self.record(event="exited", name=name)
        if name in self.forgive:
            return [(SUPERVISOR, Forgive(name, "the test blames the work it was given"))]
        return []

    def tick(self, now, tree):
        if not self.commands_path or not os.path.exists(self.commands_path):
            return []
        with open(self.commands_path) as commands:
            lines = commands.read().splitlines()
        routed = []
        for line in lines[self.commands_done:]:
            command = json.loads(line)
            if "start" in command:
                target = command.get("target", "tests.unit.supervisor.children:echo")
                spec = ChildSpec(name=command["start"], target=target,
                                 restart=Restart(command.get("restart", "transient")), shutdown_timeout_s=2)
                routed.append((SUPERVISOR, StartChild(spec, self.child_config)))
            else:
                routed.append((SUPERVISOR, StopChild(command["stop"], "the test asked")))
        self.commands_done = len(lines)
        return routed

    def tree_stopping(self):
        self.record(event="stopping")
        return []


def main() -> int:
    setup = json.loads(sys.argv[1])
    stderr = os.open(setup["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(stderr, 2)  # the children's too, as the endpoint's daemon points it at its log
    logging.basicConfig(filename=setup["log"], level=logging.DEBUG,
                        format="%(asctime)s supervisor %(levelname)s %(message)s")
    specs = [ChildSpec(name=c["name"], target=c.get("target", "tests.unit.supervisor.children:echo"),
                       restart=Restart(c.get("restart", "permanent")), shutdown_timeout_s=2,
                       isolated=c.get("isolated", False), start_timeout_s=c.get("start_timeout_s"))
             for c in setup["children"]]
    given = setup.get("policy", {})
    liveness_keys = {f.name for f in attrs.fields(Liveness)}
    policy = RestartPolicy(**{k: v for k, v in given.items() if k not in liveness_keys})
    liveness = Liveness(**{k: v for k, v in given.items() if k in liveness_keys})
    child_config = {"title": setup["title"], "send_from": setup.get("send_from")}
    dispatcher = RecordingDispatcher(setup["events"], setup.get("commands"), child_config,
                                     tuple(setup.get("forgive", ())))
    supervisor = Supervisor(specs, policy, dispatcher, child_config, title=setup["title"], liveness=liveness)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
