"""Benchmark: what a whole audit costs next to a trivial pytest run with as many test items.

    python bench/speed.py                 # 256-device synthetic host, 3 runs of each
    python bench/speed.py --devices 64 --runs 5
    python bench/speed.py --cprofile 25   # also: the 25 costliest functions of one audit run

In one run it builds the synthetic host of bench/roundtrips.py (the DL360 Gen9 sample plus N
NVMe drives, each in its own IOMMU group and VM) and a profile naming all N, counts the test
items the audit collects, writes a trivial test file with exactly as many items (parametrized
`assert True`), then times, alternately and as users run them (`python -m pytest` in a
subprocess, same interpreter):

  trivial   pytest test_trivial.py
  audit     pytest --profile P --sysroot HOST
  facts     pytest --profile P --facts SAVED.json   (the same checks, nothing gathered)

and prints each one's median and fastest wall time and the ratios audit / trivial of both (the
fastest run is the one other processes disturbed least, as timeit advises; the median shows the spread). The breakdown times the
gathering stages in this process (confined view of the copy, probe run, parse) and, from the
test reports of one more run of each (this file loaded as a plugin), the time pytest spent in
setup (fixtures: gathering happens in the first one), call (rule + Judge) and teardown.
"""

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import testinfra
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from iommu_audit import confine, gather  # noqa: E402
from roundtrips import build_host  # noqa: E402

PHASES_ENV = "IOMMU_AUDIT_BENCH_PHASES"  # set: this module, loaded with -p, writes phase totals there


# --- as a pytest plugin (-p speed): sum the phase durations of every test report ---------------

_phases = {"setup": 0.0, "call": 0.0, "teardown": 0.0}


def pytest_runtest_logreport(report) -> None:
    _phases[report.when] += report.duration


def pytest_sessionfinish(session) -> None:
    if os.environ.get(PHASES_ENV):
        Path(os.environ[PHASES_ENV]).write_text(yaml.safe_dump(_phases))


# --- the benchmark -------------------------------------------------------------------------------

def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def run(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"bench: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def count_items(cmd: list[str]) -> int:
    out = subprocess.run([*cmd, "--collect-only"], cwd=ROOT, capture_output=True, text=True).stdout
    line = [ln for ln in out.splitlines() if " collected" in ln or "tests collected" in ln or "test collected" in ln]
    if not line:
        sys.exit(f"bench: cannot count the items of {' '.join(cmd)}:\n{out[-2000:]}")
    return int(line[-1].split()[0])


def phases(cmd: list[str], tmp: Path) -> dict:
    out = tmp / "phases.yaml"
    env = dict(os.environ, **{PHASES_ENV: str(out)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench"), env.get("PYTHONPATH")]))
    took = run([*cmd, "-p", "speed"], env)
    return {**yaml.safe_load(out.read_text()), "total": took}


def gather_stages(host: Path, runs: int) -> dict:
    """Median seconds of each gathering stage of one sysroot, timed here."""
    times: dict[str, list[float]] = {"confined view": [], "probe": [], "parse": []}
    target = gather.Target(host.name, "bench", host=testinfra.get_host("local://"), sysroot=str(host))
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-view-", dir=gather._view_bases()[0]) as view:  # as gather does
            t0 = time.perf_counter()
            confine.build(str(host), view)
            t1 = time.perf_counter()
            g = gather._run_probe(target, view)
            t2 = time.perf_counter()
        gather.parse(g)
        t3 = time.perf_counter()
        for k, took in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[k].append(took)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=256, help="NVMe drives on the synthetic host (default 256)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each command (default 3)")
    ap.add_argument("--cprofile", type=int, metavar="N", default=0,
                    help="also profile one audit run in this process and print its N costliest functions")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iommu-audit-bench-") as t:
        tmp = Path(t)
        host = tmp / f"bench-{args.devices}"
        doc = yaml.safe_load((ROOT / "profiles/dl360-gen9.yaml").read_text())
        doc["devices"] = build_host(host, args.devices)
        profile = tmp / "profile.yaml"
        profile.write_text(yaml.safe_dump(doc))
        saved = tmp / "facts.json"
        audit = command("--profile", str(profile), "--sysroot", str(host))
        facts = command("--profile", str(profile), "--facts", str(saved))
        run([*audit, "--save-facts", str(saved)])  # also warms the caches
        items = count_items(audit)
        trivial_file = tmp / "test_trivial.py"
        trivial_file.write_text(f"import pytest\n\n\n@pytest.mark.parametrize('i', range({items}))\n"
                                "def test_trivial(i):\n    assert True\n")
        trivial = command(str(trivial_file))
        if count_items(trivial) != items:
            sys.exit("bench: the trivial file does not collect as many items as the audit")
        cmds = {"trivial": trivial, "audit --sysroot": audit, "audit --facts": facts}
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.runs):  # alternate, so a load spike hits every command alike
            for name, cmd in cmds.items():
                times[name].append(run(cmd))
        med = {k: statistics.median(v) for k, v in times.items()}
        fast = {k: min(v) for k, v in times.items()}
        print(f"synthetic host: {args.devices} devices, {items} test items; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'command':<22}{'median s':>10}{'fastest s':>11}   runs")
        for name, v in times.items():
            print(f"{name:<22}{med[name]:>10.2f}{fast[name]:>11.2f}   {' '.join(f'{x:.2f}' for x in v)}")
        for kind, t in (("median", med), ("fastest", fast)):
            print(f"ratio audit --sysroot / trivial ({kind}): {t['audit --sysroot'] / t['trivial']:.2f}x "
                  f"(--facts / trivial: {t['audit --facts'] / t['trivial']:.2f}x)")

        stages = gather_stages(host, args.runs)
        print("\nbreakdown (seconds)")
        print("  gathering, timed here (median): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        ph = {name: phases(cmd, tmp) for name, cmd in (("trivial", trivial), ("audit --sysroot", audit))}
        print(f"  {'pytest phases (one run)':<26}{'setup':>8}{'call':>8}{'teardown':>10}{'rest':>8}{'total':>8}")
        for name, p in ph.items():
            rest = p["total"] - p["setup"] - p["call"] - p["teardown"]
            print(f"  {name:<26}{p['setup']:>8.2f}{p['call']:>8.2f}{p['teardown']:>10.2f}{rest:>8.2f}{p['total']:>8.2f}")
        print("  (audit setup includes gathering; rest = start-up, collection, reporting, per-item hooks)")
        if args.cprofile:
            import pytest
            prof = cProfile.Profile()
            prof.runcall(pytest.main, audit[audit.index("pytest") + 1:])
            pstats.Stats(prof).sort_stats("cumulative").print_stats(args.cprofile)
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
