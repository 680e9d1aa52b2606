#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

The NFS seeds are valid calls against the fixed tree of `vmount_backend_nfs::fuzz`
(root 1, dir `d` 2, file `f` 3, symlink `l` 4, file `d/g` 5), with handles written as
HANDLE_MARK ++ inode, which the harness replaces by the server's instance id. The config
seeds are the examples plus variants whose paths exist in the harness's temp dir.
Run it again after changing the fixture or the examples; the output is deterministic.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = b"vmFH\x00\x00\x00\x01"
NFS, MOUNT, PORTMAP = 100003, 100005, 100000
ROOT, DIR, FILE, SYMLINK, NESTED = 1, 2, 3, 4, 5


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def opaque(b):
    return u32(len(b)) + b + b"\0" * ((4 - len(b) % 4) % 4)


def fh(ino):
    return opaque(MARK + u64(ino))


def auth_sys(uid=0, gid=0, groups=()):
    body = u32(0) + opaque(b"fuzz") + u32(uid) + u32(gid) + u32(len(groups))
    body += b"".join(u32(g) for g in groups)
    return u32(1) + opaque(body)


def call(xid, prog, proc_, args=b"", vers=None, cred=None):
    if vers is None:
        vers = 2 if prog == PORTMAP else 3
    cred = auth_sys() if cred is None else cred
    return u32(xid) + u32(0) + u32(2) + u32(prog) + u32(vers) + u32(proc_) + cred + u32(0) + u32(0) + args


def sattr(mode=None, size=None):
    out = (u32(1) + u32(mode)) if mode is not None else u32(0)
    out += u32(0) + u32(0)  # uid, gid
    out += (u32(1) + u64(size)) if size is not None else u32(0)
    out += u32(0) + u32(0)  # atime, mtime: don't change
    return out


def records():
    x = iter(range(1, 1000))
    r = {}
    r["null"] = call(next(x), NFS, 0, cred=u32(0) + u32(0))
    r["mnt"] = call(next(x), MOUNT, 1, opaque(b"/vmount"))
    r["mnt_sub"] = call(next(x), MOUNT, 1, opaque(b"/vmount/d"))
    r["export"] = call(next(x), MOUNT, 5)
    r["getport"] = call(next(x), PORTMAP, 3, u32(NFS) + u32(3) + u32(6) + u32(0))
    r["getattr"] = call(next(x), NFS, 1, fh(FILE))
    r["setattr_size"] = call(next(x), NFS, 2, fh(FILE) + sattr(size=1 << 40) + u32(0))
    r["setattr_mode"] = call(next(x), NFS, 2, fh(FILE) + sattr(mode=0o4755) + u32(0))
    r["lookup"] = call(next(x), NFS, 3, fh(ROOT) + opaque(b"f"))
    r["lookup_dotdot"] = call(next(x), NFS, 3, fh(DIR) + opaque(b".."))
    r["access"] = call(next(x), NFS, 4, fh(FILE) + u32(0x3F))
    r["readlink"] = call(next(x), NFS, 5, fh(SYMLINK))
    r["read"] = call(next(x), NFS, 6, fh(FILE) + u64(1) + u32(4096))
    r["write"] = call(next(x), NFS, 7, fh(FILE) + u64(2) + u32(5) + u32(2) + opaque(b"world"))
    r["write_far"] = call(next(x), NFS, 7, fh(FILE) + u64((1 << 63) - 2) + u32(1) + u32(0) + opaque(b"z"))
    r["create"] = call(next(x), NFS, 8, fh(ROOT) + opaque(b"new") + u32(0) + sattr(mode=0o644))
    r["create_excl"] = call(next(x), NFS, 8, fh(DIR) + opaque(b"ex") + u32(2) + b"verifier")
    r["mkdir"] = call(next(x), NFS, 9, fh(DIR) + opaque(b"sub") + sattr(mode=0o755))
    r["symlink"] = call(next(x), NFS, 10, fh(ROOT) + opaque(b"s") + sattr() + opaque(b"../x"))
    r["mknod_fifo"] = call(next(x), NFS, 11, fh(ROOT) + opaque(b"p") + u32(7) + sattr(mode=0o600))
    r["remove"] = call(next(x), NFS, 12, fh(ROOT) + opaque(b"f"))
    r["rmdir"] = call(next(x), NFS, 13, fh(ROOT) + opaque(b"d"))
    r["rename"] = call(next(x), NFS, 14, fh(ROOT) + opaque(b"f") + fh(DIR) + opaque(b"g"))
    r["rename_into_self"] = call(next(x), NFS, 14, fh(ROOT) + opaque(b"d") + fh(DIR) + opaque(b"d2"))
    r["link"] = call(next(x), NFS, 15, fh(FILE) + fh(DIR) + opaque(b"hard"))
    r["readdir"] = call(next(x), NFS, 16, fh(ROOT) + u64(0) + u64(0) + u32(4096))
    r["readdirplus"] = call(next(x), NFS, 17, fh(ROOT) + u64(0) + u64(0) + u32(1024) + u32(8192))
    r["fsstat"] = call(next(x), NFS, 18, fh(ROOT))
    r["fsinfo"] = call(next(x), NFS, 19, fh(ROOT))
    r["pathconf"] = call(next(x), NFS, 20, fh(ROOT))
    r["commit"] = call(next(x), NFS, 21, fh(FILE) + u64(0) + u32(0))
    r["getattr_nobody"] = call(next(x), NFS, 1, fh(FILE), cred=auth_sys(65534, 65534, (1, 2)))
    return r


def mark(rec, last=True):
    return u32((0x80000000 if last else 0) | len(rec)) + rec


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for target in ("nfs_record", "nfs_stream", "config"):
        shutil.rmtree(os.path.join(HERE, "corpus", target), ignore_errors=True)
    recs = records()
    for name, rec in recs.items():
        write("nfs_record", name, rec)
        write("nfs_stream", name, mark(rec))
    # Sessions: several calls on one connection, as a client makes them.
    session = ["mnt", "lookup", "write", "read", "getattr", "create", "rename", "readdirplus", "remove"]
    write("nfs_stream", "session", b"".join(mark(recs[n]) for n in session))
    # A call split over three fragments, and a retransmission (same xid) of a REMOVE.
    w = recs["write"]
    write("nfs_stream", "fragments", mark(w[:10], False) + mark(w[10:30], False) + mark(w[30:]))
    write("nfs_stream", "retransmit", mark(recs["remove"]) * 2)
    # Configs: the examples as they are, and with paths inside the harness's temp dir.
    examples = os.path.join(HERE, "..", "examples")
    for name in sorted(os.listdir(examples)):
        if not name.endswith(".toml"):
            continue
        with open(os.path.join(examples, name), "rb") as f:
            text = f.read()
        write("config", name, text)
        local = text.replace(b'"/tmp/vmount-loop"', b'"mnt"').replace(b'"/tmp/vmount"', b'"mnt"')
        local = local.replace(b'"/tmp/vmount-src"', b'"src"')
        write("config", "local-" + name, local)
    write("config", "minimal", b'mountpoint = "mnt"\n[filesystem]\ntype = "memfs"\n')
    write("config", "errors", 'mountpoint = "mnt"\nnäme = "é"\n[filesystem]\ntype = "memfs"\nsize_limit = "1.5 GiB"\nmax_inodes = -1\n[fuse]\nattr_timeout = "1h30m"\nthreads = 99999\n[winfsp]\nvolume_name = "ü"\n'.encode())
    write("config", "tables", b'mountpoint = "~root/mnt"\nread_only = true\n[filesystem]\ntype = "loopback"\nsource = "mnt"\n[nfs]\nport = 70000\n[[fuse]]\n')
    write("config", "nfs-serve", b'mountpoint = "mnt"\nbackend = "nfs"\n[filesystem]\ntype = "loopback"\nsource = "~/x"\n[nfs]\nmount = false\nport = 65535\n')


if __name__ == "__main__":
    main()
