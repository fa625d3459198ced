#!/usr/bin/env python3
"""Container runtime benchmark: create+start+wait+delete of /bin/true with `node-agent runtime run`
and with `runc run`, on the same bundle, interleaved in one run. Prints the median and p90 of each,
the ratio (node-agent / runc; the issue's target is <= 0.6), and the peak RSS of each runtime
process. Needs root, busybox-static and runc.

    sudo python3 bench/runtime-bench.py [--iterations 40] [--node-agent .build/release/node-agent]
"""
import argparse, json, os, resource, shutil, statistics, subprocess, sys, tempfile, time

def make_bundle(path):
    rootfs = os.path.join(path, "rootfs")
    for d in ("bin", "proc", "dev", "sys", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin/true"))
    subprocess.run(["runc", "spec", "--bundle", path], check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)

def timed(cmd):
    """Wall time in ms and the peak RSS (KiB) of the child, from wait4's rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - start) * 1000
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err}")
    return elapsed, usage.ru_maxrss

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--node-agent", default=os.path.join(os.path.dirname(__file__), "../.build/release/node-agent"))
    parser.add_argument("--library-bench", default=os.path.join(os.path.dirname(__file__), "../.build/release/runtime-bench"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = tempfile.mkdtemp(prefix="runtime-bench-")
    try:
        bundle = os.path.join(work, "bundle")
        make_bundle(bundle)
        runners = {
            "node-agent": lambda i: [args.node_agent, "runtime", "run", "--root", os.path.join(work, "na-state"), "--bundle", bundle, f"b{i}"],
            "runc": lambda i: ["runc", "--root", os.path.join(work, "runc-state"), "run", "--bundle", bundle, f"b{i}"],
        }
        for name, command in runners.items():  # warm caches once each
            timed(command("warm"))
        times = {name: [] for name in runners}
        rss = {name: [] for name in runners}
        for i in range(args.iterations):
            for name, command in runners.items():
                ms, kib = timed(command(i))
                times[name].append(ms)
                rss[name].append(kib)
        print(f"create+start+wait+delete of /bin/true, {args.iterations} runs each, interleaved")
        print(f"{'runtime':<12}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}{'peak RSS MiB':>14}")
        for name in runners:
            t = sorted(times[name])
            p90 = t[int(len(t) * 0.9) - 1]
            print(f"{name:<12}{statistics.median(t):>11.1f}{p90:>9.1f}{t[0]:>9.1f}{max(rss[name]) / 1024:>14.1f}")
        ratio = statistics.median(times["node-agent"]) / statistics.median(times["runc"])
        print(f"ratio node-agent CLI/runc (median): {ratio:.2f}  (target <= 0.60)")
        # The agent itself never execs a CLI: it drives the library from its long-lived process.
        if os.path.exists(args.library_bench):
            start = time.perf_counter()
            out = subprocess.run([args.library_bench, bundle, os.path.join(work, "lib-state"), str(args.iterations)],
                                 check=True, capture_output=True, text=True).stdout
            lib = sorted(float(x) for x in out.split())
            print(f"{'library':<12}{statistics.median(lib):>11.1f}{lib[int(len(lib) * 0.9) - 1]:>9.1f}{lib[0]:>9.1f}{'(in-process)':>14}")
            print(f"ratio library/runc (median): {statistics.median(lib) / statistics.median(times['runc']):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
