#!/usr/bin/env python3
"""Checks of a GET /cluster/status body for test_cluster.sh.

  cluster_status.py check COND FILE   exit 0 when COND holds (reasons on stdout otherwise)
  cluster_status.py need FILE         bytes the model needs, from the plan's error message

COND: local       one node "local" holding every layer, one serving pipeline
      too_big     no pipeline; the error says how much memory is missing
      serving     some pipeline is serving
      two_stages  exactly one pipeline, serving, with two stages whose ranges
                  cover [0, n_layers) in order; the node named "big" (offering
                  more memory) holds more layers than the one named "small"
"""
import json
import re
import sys

GIB = 1 << 30


def load(path):
    with open(path) as f:
        return json.load(f)


def check(cond, s):
    pipes, nodes = s.get("pipelines", []), s.get("nodes", [])
    n_layers = s.get("n_layers")
    if cond == "local":
        ok = (len(nodes) == 1 and nodes[0]["id"] == "local" and nodes[0]["layers"] == [0, n_layers]
              and len(pipes) == 1 and pipes[0]["state"] == "serving")
        return ok, "expected one local node with layers [0, %s] and a serving pipeline" % n_layers
    if cond == "too_big":
        err = s.get("error") or ""
        return (not pipes and "missing" in err and "GiB" in err), "no plan error naming the missing memory"
    if cond == "serving":
        return any(p["state"] == "serving" for p in pipes), "no serving pipeline"
    if cond == "two_stages":
        if len(pipes) != 1 or pipes[0]["state"] != "serving":
            return False, "expected exactly one serving pipeline, got %d" % len(pipes)
        p = pipes[0]
        rng = p["layers"]
        if len(rng) != 2 or rng[0][0] != 0 or rng[0][1] != rng[1][0] or rng[1][1] != n_layers:
            return False, "ranges %s do not cover [0, %s) in two stages" % (rng, n_layers)
        by_name = {n["name"]: n for n in nodes if n.get("layers")}
        if set(by_name) != {"small", "big"}:
            return False, "layers held by %s, expected small and big" % sorted(by_name)
        held = {k: v["layers"][1] - v["layers"][0] for k, v in by_name.items()}
        if held["big"] <= held["small"]:
            return False, "big holds %d layers, small %d: not in proportion to memory" % (held["big"], held["small"])
        if [by_name[k]["id"] for k in sorted(by_name, key=lambda k: by_name[k]["layers"][0])] != p["stages"]:
            return False, "pipeline stages %s do not match the nodes' ranges" % p["stages"]
        print("layers: small %s, big %s" % (by_name["small"]["layers"], by_name["big"]["layers"]))
        return True, ""
    return False, "unknown condition " + cond


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        try:
            ok, why = check(sys.argv[2], load(sys.argv[3]))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            ok, why = False, "bad status: %r" % e
        if not ok and why:
            print(why)
        return 0 if ok else 1
    if len(sys.argv) == 3 and sys.argv[1] == "need":
        m = re.search(r"needs ([0-9.]+) GiB", load(sys.argv[2]).get("error") or "")
        if not m:
            return 1
        print(int(float(m.group(1)) * GIB))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
