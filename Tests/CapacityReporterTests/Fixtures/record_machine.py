#!/usr/bin/env python3
"""Records what the capacity scan reads from a live machine into a fixture tree.

    sudo python3 record_machine.py OUTPUT_DIR DATA_DIR [DATA_DIR ...]

Copies /proc, /sys and /etc files (keeping sysfs symlinks as symlinks, with their real targets)
for the CPUs, memory, the block devices under the data directories (partitions, slaves of md and
device-mapper devices, loop backing files), PCI devices and the machine's identifiers. statvfs(3)
is a syscall, so its answers for the data directories' mount points go to OUTPUT_DIR/recorded/statvfs
as "<mount point> <total bytes> <available bytes> <files> <free files>". Only these small files
are copied. machine-id(5) asks that the machine id be kept confidential: it and the DMI product
uuid are replaced by a hash of themselves (same shape, not the machine's).
"""
import hashlib
import os
import sys

out = os.path.abspath(sys.argv[1])
data_dirs = sys.argv[2:]


def dest(path):
    return os.path.join(out, path.lstrip("/"))


def record(path):
    """Recreates `path` below `out`: every symlink on the way as a symlink, then the file itself.
    Returns the resolved host path."""
    current = "/"
    parts = [p for p in path.split("/") if p]
    seen = 0
    while parts:
        part = parts.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            current = os.path.dirname(current) or "/"
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            seen += 1
            if seen > 40:
                return None
            target = os.readlink(candidate)
            link = dest(candidate)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(target, link)
            if target.startswith("/"):
                current = "/"
            parts = [p for p in target.split("/") if p] + parts
        else:
            current = candidate
    if os.path.isfile(current):
        try:
            with open(current, "rb") as f:
                content = f.read(1 << 22)
        except OSError:
            return current
        if current in ("/etc/machine-id", "/sys/devices/virtual/dmi/id/product_uuid"):
            digest = hashlib.sha256(b"node-agent fixture " + content.strip()).hexdigest()[:32]
            if b"-" in content:
                digest = "-".join([digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32]])
            content = digest.encode() + b"\n"
        os.makedirs(os.path.dirname(dest(current)), exist_ok=True)
        with open(dest(current), "wb") as f:
            f.write(content)
    elif os.path.isdir(current):
        os.makedirs(dest(current), exist_ok=True)
    return current


def record_device(sysdir, depth=0):
    if depth > 8 or sysdir is None:
        return
    for name in ("partition", "queue/rotational", "size", "dm/name", "loop/backing_file"):
        if os.path.exists(os.path.join(sysdir, name)):
            record(os.path.join(sysdir, name))
    if os.path.exists(os.path.join(sysdir, "partition")):
        record_device(os.path.dirname(sysdir), depth + 1)
    slaves = os.path.join(sysdir, "slaves")
    if os.path.isdir(slaves):
        record(slaves)
        for slave in sorted(os.listdir(slaves)):
            record_device(record(os.path.join(slaves, slave)), depth + 1)
    backing = os.path.join(sysdir, "loop/backing_file")
    if os.path.exists(backing):
        with open(backing) as f:
            record_data_path(f.read().strip())


mounts = []
with open("/proc/self/mountinfo") as f:
    mountinfo = f.read()
for line in mountinfo.splitlines():
    fields = line.split()
    mounts.append((fields[2], fields[4].replace("\\040", " "), line))

used_mounts = {}
statvfs_lines = []


def record_data_path(path):
    existing = path
    while not os.path.exists(existing) and existing != "/":
        existing = os.path.dirname(existing) or "/"
    st = os.stat(existing)
    devno = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    best = None
    for dev, point, line in mounts:
        prefix = "" if point == "/" else point
        if dev == devno and (existing == point or existing.startswith(prefix + "/")):
            if best is None or len(point) >= len(best[1]):
                best = (dev, point, line)
    if best is None:
        return
    if best[1] not in used_mounts:
        used_mounts[best[1]] = best[2]
        vfs = os.statvfs(best[1])
        statvfs_lines.append("%s %d %d %d %d" % (best[1], vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize,
                                                  vfs.f_files, vfs.f_favail))
    if os.major(st.st_dev) != 0:
        record_device(record("/sys/dev/block/" + devno))


for path in ("/sys/devices/system/cpu/online", "/proc/cpuinfo", "/proc/meminfo", "/proc/loadavg",
             "/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max", "/proc/pressure/memory",
             "/proc/sys/kernel/random/boot_id", "/etc/machine-id", "/sys/class/dmi/id/product_uuid"):
    if os.path.exists(path):
        record(path)
for data_dir in data_dirs:
    record_data_path(data_dir)
os.makedirs(dest("/proc/self"), exist_ok=True)
with open(dest("/proc/self/mountinfo"), "w") as f:
    f.write("".join(line + "\n" for line in used_mounts.values()))
os.makedirs(dest("/recorded"), exist_ok=True)
with open(dest("/recorded/statvfs"), "w") as f:
    f.write("".join(line + "\n" for line in statvfs_lines))
pci = "/sys/bus/pci/devices"
if os.path.isdir(pci):
    for slot in sorted(os.listdir(pci)):
        for name in ("class", "vendor", "device"):
            record(os.path.join(pci, slot, name))
