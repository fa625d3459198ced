#!/usr/bin/env python3
"""Writes the machine shapes this build machine cannot record (record_machine.py recorded
vm-2cpu-virtio from it): a server with SSD and HDD disks, md RAID and LVM; a box with GPUs, a loop
device and btrfs; and a broken machine with unreadable and malformed entries. The trees follow the
kernel's sysfs layout (devices under /sys/devices, /sys/dev/block, /sys/block and /sys/class/block
as symlinks into it), so the scan reads them exactly as it reads a live machine.

    python3 make_shapes.py   (from this directory; rewrites the three trees)
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))


class Tree:
    def __init__(self, name):
        self.root = os.path.join(HERE, name)
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)

    def file(self, path, text):
        full = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def link(self, path, target):
        full = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(target, full)

    def rel(self, frm, to):
        """A relative symlink target from the directory of `frm` to `to` (both absolute in the tree)."""
        return os.path.relpath(to, os.path.dirname(frm))

    def disk(self, devpath, name, devno, rotational, size_sectors, partitions=()):
        """A disk at /sys/devices/<devpath>/block/<name> with partitions [(name, number, devno)]."""
        base = "/sys/devices/%s/block/%s" % (devpath, name)
        self.file(base + "/queue/rotational", "%d\n" % rotational)
        self.file(base + "/size", "%d\n" % size_sectors)
        self.file(base + "/dev", devno + "\n")
        self.link("/sys/block/" + name, self.rel("/sys/block/" + name, base))
        self.link("/sys/class/block/" + name, self.rel("/sys/class/block/" + name, base))
        self.link("/sys/dev/block/" + devno, self.rel("/sys/dev/block/" + devno, base))
        for part, number, partdev in partitions:
            pbase = base + "/" + part
            self.file(pbase + "/partition", "%d\n" % number)
            self.file(pbase + "/dev", partdev + "\n")
            self.link("/sys/class/block/" + part, self.rel("/sys/class/block/" + part, pbase))
            self.link("/sys/dev/block/" + partdev, self.rel("/sys/dev/block/" + partdev, pbase))
        return base

    def virtual(self, name, devno, rotational, slaves, dm_name=None):
        """An md or device-mapper device over `slaves` (sysfs directories of the members)."""
        base = "/sys/devices/virtual/block/" + name
        self.file(base + "/queue/rotational", "%d\n" % rotational)
        self.file(base + "/dev", devno + "\n")
        if dm_name:
            self.file(base + "/dm/name", dm_name + "\n")
        for slave in slaves:
            member = os.path.basename(slave)
            self.link(base + "/slaves/" + member, self.rel(base + "/slaves/" + member, slave))
        self.link("/sys/block/" + name, self.rel("/sys/block/" + name, base))
        self.link("/sys/class/block/" + name, self.rel("/sys/class/block/" + name, base))
        self.link("/sys/dev/block/" + devno, self.rel("/sys/dev/block/" + devno, base))
        return base

    def pci(self, slot, pci_class, vendor, device, parent="pci0000:00"):
        base = "/sys/devices/%s/%s" % (parent, slot)
        if pci_class is not None:
            self.file(base + "/class", pci_class + "\n")
        self.file(base + "/vendor", vendor + "\n")
        self.file(base + "/device", device + "\n")
        self.link("/sys/bus/pci/devices/" + slot, self.rel("/sys/bus/pci/devices/" + slot, base))

    def common(self, cpus, mem_total_kib, mem_available_kib, machine_id, product_uuid, boot_id):
        if cpus is not None:
            self.file("/sys/devices/system/cpu/online", cpus + "\n")
        if mem_total_kib is not None:
            self.file("/proc/meminfo", "MemTotal:       %d kB\nMemFree:        %d kB\nMemAvailable:   %d kB\n"
                      % (mem_total_kib, mem_available_kib // 2, mem_available_kib))
        self.file("/proc/loadavg", "0.52 0.40 0.31 2/811 123456\n")
        self.file("/proc/sys/kernel/pid_max", "4194304\n")
        self.file("/proc/sys/kernel/threads-max", "1031433\n")
        self.file("/proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        if machine_id is not None:
            self.file("/etc/machine-id", machine_id + "\n")
        if product_uuid is not None:
            self.file("/sys/class/dmi/id/product_uuid", product_uuid + "\n")
        self.file("/proc/sys/kernel/random/boot_id", boot_id + "\n")

    def mounts(self, lines, statvfs):
        self.file("/proc/self/mountinfo", "".join(line + "\n" for line in lines))
        self.file("/recorded/statvfs", "".join(line + "\n" for line in statvfs))


TB = 10 ** 12

# A 2U server: root on md127 (RAID1 of two SATA SSD partitions), an HDD with one partition, md126
# (RAID of two whole HDDs), LVM on an NVMe partition, and an LVM volume over one SSD and one HDD.
s = Tree("server-hdd-ssd-md")
s.common("0-31", 131841236, 120000000, "a3c4e1f0b2d94f6c8e7a1b2c3d4e5f60",
         "4c4c4544-0042-3510-8052-b4c04f4d3732", "7d1e8c4a-2b3f-4d5e-9a6b-1c2d3e4f5a6b")
ata = "pci0000:00/0000:00:17.0/ata%d/host%d/target%d:0:0/%d:0:0:0"
sda = s.disk(ata % (1, 0, 0, 0), "sda", "8:0", 0, 937703088, [("sda1", 1, "8:1"), ("sda2", 2, "8:2")])
sdb = s.disk(ata % (2, 1, 1, 1), "sdb", "8:16", 0, 937703088, [("sdb1", 1, "8:17"), ("sdb2", 2, "8:18")])
sdc = s.disk(ata % (3, 2, 2, 2), "sdc", "8:32", 1, 31251759104, [("sdc1", 1, "8:33")])
sdd = s.disk(ata % (4, 3, 3, 3), "sdd", "8:48", 1, 15628053168)
sde = s.disk(ata % (5, 4, 4, 4), "sde", "8:64", 1, 15628053168)
sdf = s.disk(ata % (6, 5, 5, 5), "sdf", "8:80", 0, 3907029168)
sdg = s.disk(ata % (7, 6, 6, 6), "sdg", "8:96", 1, 7814037168)
nvme = s.disk("pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0", "nvme0n1", "259:0", 0, 3750748848,
              [("nvme0n1p1", 1, "259:1")])
s.virtual("md127", "9:127", 0, [sda + "/sda2", sdb + "/sdb2"])
s.virtual("md126", "9:126", 1, [sdd, sde])
s.virtual("dm-0", "253:0", 0, [nvme + "/nvme0n1p1"], dm_name="vg0-fast")
s.virtual("dm-1", "253:1", 0, [sdf, sdg], dm_name="vg1-mixed")
s.pci("0000:03:00.0", "0x030000", "0x1a03", "0x2000", parent="pci0000:00/0000:00:1c.0")  # ASPEED BMC display
s.pci("0000:00:17.0", "0x010601", "0x8086", "0xa352")
s.pci("0000:18:00.0", "0x020000", "0x8086", "0x1572")
s.mounts([
    "25 1 9:127 / / rw,relatime shared:1 - ext4 /dev/md127 rw,errors=remount-ro",
    "40 25 8:33 / /data/hdd1 rw,noatime shared:20 - xfs /dev/sdc1 rw,attr2,inode64",
    "41 25 9:126 / /data/hdd2 rw,noatime shared:21 - xfs /dev/md126 rw,attr2,inode64",
    "42 25 253:0 / /data/ssd rw,noatime shared:22 - ext4 /dev/mapper/vg0-fast rw",
    "43 25 253:1 / /data/mixed rw,noatime shared:23 - ext4 /dev/mapper/vg1-mixed rw",
    "44 25 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=13184124k",
], [
    "/ 470000000000 410000000000 29310976 29000000",
    "/data/hdd1 16000000000000 15500000000000 1562500000 1562490000",
    "/data/hdd2 8000000000000 7900000000000 781250000 781240000",
    "/data/ssd 1900000000000 1800000000000 117000000 116990000",
    "/data/mixed 5800000000000 5700000000000 362000000 361990000",
])

# A workstation-class box with GPUs: root on an NVMe partition, a data directory on a loop device
# whose backing file lives on the NVMe (the loop device itself claims rotational=1), and btrfs on
# a SATA HDD (btrfs has an anonymous device number; mountinfo names /dev/sda1).
g = Tree("gpu-box")
g.common("0-15", 65776848, 60000000, "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
         "03000200-0400-0500-0006-000700080009", "11111111-2222-4333-8444-555555555555")
nvme = g.disk("pci0000:00/0000:00:01.2/0000:02:00.0/nvme/nvme0", "nvme0n1", "259:0", 0, 1953525168,
              [("nvme0n1p1", 1, "259:1"), ("nvme0n1p2", 2, "259:2")])
sda = g.disk("pci0000:00/0000:00:08.1/ata1/host0/target0:0:0/0:0:0:0", "sda", "8:0", 1, 7814037168, [("sda1", 1, "8:1")])
loop = "/sys/devices/virtual/block/loop0"
g.file(loop + "/queue/rotational", "1\n")
g.file(loop + "/loop/backing_file", "/var/lib/images/data.img\n")
g.link("/sys/block/loop0", g.rel("/sys/block/loop0", loop))
g.link("/sys/class/block/loop0", g.rel("/sys/class/block/loop0", loop))
g.link("/sys/dev/block/7:0", g.rel("/sys/dev/block/7:0", loop))
g.pci("0000:01:00.0", "0x030000", "0x10de", "0x2204", parent="pci0000:00/0000:00:01.1")   # NVIDIA GeForce RTX 3090
g.pci("0000:01:00.1", "0x040300", "0x10de", "0x1aef", parent="pci0000:00/0000:00:01.1")   # its HDMI audio
g.pci("0000:41:00.0", "0x038000", "0x1002", "0x740f", parent="pci0000:40/0000:40:01.1")   # AMD Instinct MI210
g.pci("0000:04:00.0", "0x030000", "0x1a03", "0x2000", parent="pci0000:00/0000:00:07.1")   # ASPEED BMC display
g.pci("0000:00:08.1", "0x010601", "0x1022", "0x7901")
g.mounts([
    "24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw",
    "30 24 259:1 / /boot/efi rw,relatime shared:2 - vfat /dev/nvme0n1p1 rw",
    "51 24 7:0 / /data/images-loop rw,relatime shared:30 - ext4 /dev/loop0 rw",
    "52 24 0:45 / /data/btrfs rw,relatime shared:31 - btrfs /dev/sda1 rw,space_cache=v2,subvolid=5,subvol=/",
], [
    "/ 980000000000 700000000000 61054976 60000000",
    "/data/images-loop 200000000000 190000000000 13107200 13100000",
    "/data/btrfs 4000000000000 3900000000000 0 0",
])

# A machine with damaged or unreadable entries: a CPU list that is not one (cpuinfo then counts
# 3), meminfo without MemTotal, a device link that leads nowhere, a rotational flag that is a
# directory, another holding nonsense, an md device whose member is missing, a mounted disk that
# statvfs cannot read (gone), a PCI device without a class, a malformed machine-id.
b = Tree("broken")
b.common("garbage", None, 0, "not-a-machine-id", None, "99999999-8888-4777-8666-555555555555")
b.file("/proc/meminfo", "MemFree:         1000 kB\nMemAvailable:    2000 kB\n")
b.file("/proc/cpuinfo", "".join("processor\t: %d\nvendor_id\t: GenuineIntel\n\n" % i for i in range(3)))
b.link("/sys/dev/block/8:1", "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1")
sdb = b.disk("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0", "sdb", "8:16", 0, 1000, [("sdb1", 1, "8:17")])
os.remove(os.path.join(b.root, (sdb + "/queue/rotational").lstrip("/")))
b.file(sdb + "/queue/rotational/.keep", "a directory where the kernel has a file\n")
sdc = b.disk("pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0", "sdc", "8:32", 0, 1000, [("sdc1", 1, "8:33")])
b.file(sdc + "/queue/rotational", "maybe\n")
b.virtual("md0", "9:0", 0, [])
b.link("/sys/devices/virtual/block/md0/slaves/sdx", "../../../../pci0000:00/0000:00:1f.2/ata9/block/sdx")
b.pci("0000:00:02.0", None, "0x8086", "0x3e92")
b.pci("0000:00:1f.2", "0x010601", "0x8086", "0xa352")
b.mounts([
    "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
    "40 25 8:17 / /data/a rw,relatime shared:20 - ext4 /dev/sdb1 rw",
    "41 25 8:33 / /data/b rw,relatime shared:21 - ext4 /dev/sdc1 rw",
    "42 25 8:49 / /data/gone rw,relatime shared:22 - ext4 /dev/sdd1 rw",
    "43 25 9:0 / /data/md rw,relatime shared:23 - ext4 /dev/md0 rw",
], [
    "/ 100000000000 90000000000 6000000 5900000",
    "/data/a 200000000000 100000000000 12000000 11000000",
    "/data/b 300000000000 3000000000 18000000 17900000",
    "/data/md 400000000000 300000000000 24000000 23000000",
])
