"""Deterministic benchmark corpus for strata.

Two operations:

* ``generate(dest, scale)`` builds corpus state A: real source/doc trees and
  binaries copied from the system (some copied again with edits, as a "fork"),
  synthetic source files, large partly-compressible files, exact duplicates at
  other paths, a few symlinks and empty files.
* ``mutate(root, scale)`` turns a copy of state A into state B: a few percent
  of the files edited in place (appends, same-size overwrites, insertions in
  the middle), some files deleted, some added, one directory renamed.

Both are seeded, so the same machine and scale always give the same trees.
The system files used as material are listed in sorted order before sampling;
a different set of installed packages gives a different (but still seeded)
corpus, which is why the manifest records a fingerprint.
"""

import glob
import hashlib
import math
import os
import random
import shutil
import time

CORPUS_VERSION = 1
SEED = 0x5742A7A
MIB = 1 << 20

# Byte budgets and counts at scale 1.0; every one is multiplied by the scale.
TEXT_BUDGET = 300 * MIB      # real text trees (/usr/include, docs, python)
FORK_FRACTION = 0.30         # share of the text files copied again, edited
SYNTH_FILES = 20_000         # synthetic source files (~4 KiB on average)
BIN_BUDGET = 350 * MIB       # executables and shared libraries
LARGE_BUDGET = 400 * MIB     # large files, tens of MiB each
LARGE_COUNT = 10
DUP_FRACTION = 0.08          # share of files duplicated at another path
SYMLINKS = 100
EMPTY_FILES = 50

MAX_SOURCE_FILE = 8 * MIB    # larger system files are not used as material
SEGMENT = MIB                # building block of the large files

TEXT_ROOTS = ["/usr/include", "/usr/share/doc"] + sorted(glob.glob("/usr/lib/python3*"))
BIN_ROOTS = ["/usr/bin"]
LIB_ROOTS = sorted(glob.glob("/usr/lib/*-linux-gnu"))

SYNTH_EXTS = [".c", ".h", ".py", ".rs", ".js", ".go", ".md", ".txt"]
WORDS = ("alpha beta gamma delta index cache store chunk packer tree node "
         "parser lexer buffer stream reader writer config util core net io "
         "crypto hash table queue worker task job sched mem alloc log").split()


def log(msg):
    print(f"[corpus] {msg}", flush=True)


# ---------------------------------------------------------------- material

def list_files(roots, predicate=lambda p: True):
    """Sorted (root, path) pairs of regular, readable, not-too-large files."""
    out = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                try:
                    size = os.path.getsize(path)
                except OSError:
                    continue
                if size <= MAX_SOURCE_FILE and os.access(path, os.R_OK) and predicate(path):
                    out.append((root, path))
    return out


def take_budget(files, budget, rng):
    """Shuffle files and take them until `budget` bytes; cycle (pass > 0)
    through the list again if it runs out. Yields (pass, root, path)."""
    order = list(files)
    rng.shuffle(order)
    total, n = 0, 0
    while order and total < budget:
        if n == len(order) and total == 0:
            return  # only empty files: nothing to fill the budget with
        root, path = order[n % len(order)]
        total += os.path.getsize(path)
        yield n // len(order), root, path
        n += 1


def line_pool(paths, rng, limit=300_000):
    """Lines of real source files, the raw material of synthetic text."""
    pool = []
    for path in paths:
        if not path.endswith((".h", ".py", ".c", ".hpp", ".txt", ".md", ".rst")):
            continue
        with open(path, "rb") as f:
            data = f.read()
        pool.extend(l for l in data.split(b"\n") if len(l) < 160)
        if len(pool) >= limit:
            break
    if not pool:  # a bare system: fall back to generated lines
        pool = [f"int {rng.choice(WORDS)}_{i} = {i};".encode() for i in range(5000)]
    return pool


# ---------------------------------------------------------------- edits

def is_text(data):
    return b"\0" not in data[:8192]


def mutate_text(data, rng):
    """A handful of line edits: change, insert, delete."""
    lines = data.split(b"\n")
    for _ in range(1 + len(lines) // 300):
        i = rng.randrange(len(lines))
        op = rng.randrange(3)
        if op == 0:
            lines[i] = lines[i].replace(b" ", b"  ", 1) + b" /* changed */"
        elif op == 1:
            lines.insert(i, b"    // added: " + rng.choice(WORDS).encode())
        elif len(lines) > 1:
            del lines[i]
    return b"\n".join(lines)


def mutate_bytes(data, rng):
    """A few small byte-level edits: overwrite, insert, delete."""
    buf = bytearray(data)
    for _ in range(1 + len(buf) // (256 * 1024)):
        i = rng.randrange(max(1, len(buf)))
        op = rng.randrange(3)
        if op == 0:
            buf[i:i + 16] = rng.randbytes(16)
        elif op == 1:
            buf[i:i] = rng.randbytes(rng.randrange(1, 64))
        else:
            del buf[i:i + rng.randrange(1, 64)]
    return bytes(buf)


def mutate(data, rng):
    if not data:
        return b"edited\n"
    return mutate_text(data, rng) if is_text(data) else mutate_bytes(data, rng)


# ---------------------------------------------------------------- writers

def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def copy(src, dst, mode=0o644):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)


def synth_text(pool, size, rng):
    """About `size` bytes of source-like text sampled from the line pool."""
    header = f"// {rng.choice(WORDS)} module {rng.randrange(10**6)}\n".encode()
    lines = rng.choices(pool, k=max(1, size // 40))
    return header + b"\n".join(lines) + b"\n"


def large_blob(pool, size, rng, out):
    """Write `size` bytes to file `out` as 1 MiB segments: random, text,
    zeros, or a repeat of an earlier segment of the same file."""
    done, earlier = 0, []
    with open(out, "wb") as f:
        while done < size:
            kind = rng.choices(["random", "text", "zeros", "repeat"], [40, 35, 10, 15])[0]
            if kind == "repeat" and earlier:
                seg = rng.choice(earlier)
            elif kind == "text":
                seg = (b"\n".join(rng.choices(pool, k=SEGMENT // 30)))[:SEGMENT]
            elif kind == "zeros":
                seg = bytes(SEGMENT)
            else:
                seg = rng.randbytes(SEGMENT)
            seg = seg[:size - done]
            f.write(seg)
            if len(earlier) < 64:
                earlier.append(seg)
            done += len(seg)


# ---------------------------------------------------------------- sections

def rel_under(root, path):
    """Destination sub-path for a system file: last root component + rest."""
    return os.path.join(os.path.basename(root.rstrip("/")), os.path.relpath(path, root))


def gen_text(dest, scale, rng):
    """src/: real text trees; fork/: some of them again with edits."""
    files = list_files(TEXT_ROOTS)
    written = []
    for n, root, path in take_budget(files, TEXT_BUDGET * scale, rng):
        out = os.path.join(dest, "src", f"pass{n}" if n else "", rel_under(root, path))
        if n:
            with open(path, "rb") as f:
                write(out, mutate(f.read(), rng))
        else:
            copy(path, out)
        written.append(out)
    fork = rng.sample(written, int(len(written) * FORK_FRACTION))
    for src in sorted(fork):
        out = os.path.join(dest, "fork", os.path.relpath(src, os.path.join(dest, "src")))
        with open(src, "rb") as f:
            write(out, mutate(f.read(), rng))
    return [p for _, p in files], written + fork


def gen_synth(dest, scale, pool, rng):
    """gen/projNN/pkgMM/: synthetic source files, plus a few empty ones."""
    count = max(10, round(SYNTH_FILES * scale))
    out = []
    for i in range(count):
        proj, pkg = i // 1000, (i // 40) % 25
        name = f"{rng.choice(WORDS)}_{i}{rng.choice(SYNTH_EXTS)}"
        path = os.path.join(dest, "gen", f"proj{proj:02d}", f"pkg{pkg:02d}", name)
        size = min(200_000, int(rng.lognormvariate(math.log(2500), 1.0)))
        write(path, synth_text(pool, size, rng))
        out.append(path)
    for i in range(max(3, round(EMPTY_FILES * scale))):
        d = os.path.dirname(rng.choice(out))
        write(os.path.join(d, f"__init__{i}.py"), b"")
    return out


def gen_bins(dest, scale, rng):
    """bin/: executables and shared libraries (byte-edited on later passes)."""
    files = list_files(BIN_ROOTS) + list_files(LIB_ROOTS, lambda p: ".so" in os.path.basename(p))
    out = []
    for n, root, path in take_budget(files, BIN_BUDGET * scale, rng):
        dst = os.path.join(dest, "bin", f"pass{n}" if n else "", rel_under(root, path))
        if n:
            with open(path, "rb") as f:
                write(dst, mutate_bytes(f.read(), rng), 0o755)
        else:
            copy(path, dst, 0o755)
        out.append(dst)
    return out


def gen_large(dest, scale, pool, rng):
    """large/: a few big files, tens of MiB each at full scale."""
    count = max(2, round(LARGE_COUNT * scale))
    mean = LARGE_BUDGET * scale / count
    names = ["disk.img", "photos.tar", "db.sqlite", "video.mkv", "logs.tar",
             "dataset.bin", "backup.tar", "mail.mbox", "vm.qcow2", "build.tar"]
    out = []
    for i in range(count):
        path = os.path.join(dest, "large", f"{i:02d}-{names[i % len(names)]}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        large_blob(pool, int(mean * rng.uniform(0.5, 1.5)), rng, path)
        out.append(path)
    return out


def gen_dups(dest, scale, candidates, large, rng):
    """Exact duplicates: single files at other paths, one whole synthetic
    project copied, and one large file copied."""
    roots = ["home/alice/Downloads", "home/bob/project-copy", "old-backups/2023"]
    for src in sorted(rng.sample(candidates, int(len(candidates) * DUP_FRACTION))):
        rel = os.path.relpath(src, dest)
        copy(src, os.path.join(dest, "dup", rng.choice(roots), rel))
    gen = os.path.join(dest, "gen")
    proj = rng.choice(sorted(os.listdir(gen)))
    shutil.copytree(os.path.join(gen, proj), os.path.join(dest, "dup", "old-backups", proj + "-snapshot"))
    copy(rng.choice(large), os.path.join(dest, "dup", "old-backups", "large-copy.bin"))


def gen_links(dest, scale, targets, rng):
    """links/: relative symlinks to files elsewhere in the corpus."""
    d = os.path.join(dest, "links")
    os.makedirs(d, exist_ok=True)
    for i in range(max(5, round(SYMLINKS * scale))):
        target = rng.choice(targets)
        os.symlink(os.path.relpath(target, d), os.path.join(d, f"link{i:04d}"))


# ---------------------------------------------------------------- manifest

def describe(root):
    """File/dir/symlink counts, total bytes, and a fingerprint of the tree
    (hash of sorted relative paths with sizes and link targets)."""
    files = dirs = links = total = 0
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dirs += len(dirnames)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                links += 1
                h.update(f"L {rel} {os.readlink(path)}\n".encode())
            else:
                size = os.path.getsize(path)
                files += 1
                total += size
                h.update(f"F {rel} {size}\n".encode())
    return {"files": files, "dirs": dirs, "symlinks": links, "bytes": total,
            "fingerprint": h.hexdigest()[:16]}


def generate(dest, scale):
    """Build corpus state A in `dest` (must not exist). Returns the manifest."""
    t0 = time.monotonic()
    rng = random.Random(SEED)
    os.makedirs(dest)
    log(f"scale {scale}: text trees")
    text_sources, text = gen_text(dest, scale, rng)
    pool = line_pool(text_sources, rng)
    log(f"synthetic sources (line pool: {len(pool)} lines)")
    synth = gen_synth(dest, scale, pool, rng)
    log("binaries")
    bins = gen_bins(dest, scale, rng)
    log("large files")
    large = gen_large(dest, scale, pool, rng)
    log("duplicates and symlinks")
    gen_dups(dest, scale, text + synth + bins, large, rng)
    gen_links(dest, scale, text + synth, rng)
    manifest = describe(dest)
    manifest.update(version=CORPUS_VERSION, seed=SEED, scale=scale,
                    generation_seconds=round(time.monotonic() - t0, 1))
    log(f"done: {manifest['files']} files, {manifest['bytes'] / MIB:.0f} MiB "
        f"in {manifest['generation_seconds']} s")
    return manifest


# ---------------------------------------------------------------- mutation

def regular_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        out += [os.path.join(dirpath, n) for n in sorted(filenames)
                if not os.path.islink(os.path.join(dirpath, n))]
    return out


def edit_in_place(path, kind, rng):
    """Edit one file in place (same inode): append, overwrite or insert."""
    size = os.path.getsize(path)
    if kind == "append" or size == 0:
        with open(path, "ab") as f:
            f.write(b"\n// appended " + rng.randbytes(8).hex().encode() + b"\n")
    elif kind == "overwrite":
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(rng.randbytes(min(64, size - size // 2)))
    else:  # insert: shifts the second half of the file
        with open(path, "r+b") as f:
            data = f.read()
            f.seek(size // 2)
            f.write(rng.randbytes(rng.randrange(1, 200)) + data[size // 2:])


def scatter_blocks(path, rng, blocks=16):
    """Database-like change: overwrite a few 4 KiB blocks of a large file."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        for _ in range(blocks):
            f.seek(rng.randrange(max(1, size - 4096)))
            f.write(rng.randbytes(4096))


def mutate_tree(root, scale):
    """Turn a copy of state A into state B, in place. Returns a summary."""
    rng = random.Random(SEED + 1)
    files = regular_files(root)
    big = os.path.join(root, "large", sorted(os.listdir(os.path.join(root, "large")))[0])
    n_edit, n_del = max(3, len(files) * 3 // 100), max(1, len(files) // 100)
    picked = rng.sample([f for f in files if f != big], n_edit + n_del)
    edited, deleted = picked[:n_edit], picked[n_edit:]
    kinds = ["append", "overwrite", "insert"]
    for i, path in enumerate(edited):
        edit_in_place(path, kinds[i % 3], rng)
    scatter_blocks(big, rng)
    pool = line_pool([p for p in files if p.endswith((".h", ".py"))][:400], rng)
    for path in deleted:
        os.remove(path)
    added = add_files(root, scale, max(1, len(files) // 100), pool, rng)
    renamed = rename_dir(root, rng)
    return {"edited_in_place": len(edited) + 1, "deleted": len(deleted),
            "added": len(added), "renamed_dir": renamed,
            "edit_kinds": "append / overwrite 64 B mid-file / insert mid-file, "
                          "plus 16 scattered 4 KiB blocks in one large file"}


def add_files(root, scale, count, pool, rng):
    """New synthetic sources in a new project, and one new large file."""
    out = []
    for i in range(count):
        path = os.path.join(root, "gen", "proj-new", f"pkg{i // 40:02d}", f"new_{i}.py")
        write(path, synth_text(pool, int(rng.lognormvariate(math.log(2500), 1.0)), rng))
        out.append(path)
    big = os.path.join(root, "large", "new-download.bin")
    large_blob(pool, int(20 * MIB * scale), rng, big)
    return out + [big]


def rename_dir(root, rng):
    """Move one synthetic package directory (content unchanged)."""
    gen = os.path.join(root, "gen")
    proj = rng.choice(sorted(p for p in os.listdir(gen) if p.startswith("proj0")))
    pkg = rng.choice(sorted(os.listdir(os.path.join(gen, proj))))
    src = os.path.join(gen, proj, pkg)
    dst = os.path.join(gen, proj, pkg + "-moved")
    os.rename(src, dst)
    return os.path.relpath(src, root) + " -> " + os.path.relpath(dst, root)
