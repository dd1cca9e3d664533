#!/usr/bin/python3
"""TAP tests of the fork's own machinery (fork/): the pin is enforced, the
series applies to the pristine tarball from scratch, a re-export changes no
byte, and work that only lives in the prepared tree is never overwritten.

Each case works in a scratch clone of this repository (committed state),
so the developer's build/qemu is never touched.
"""

import os
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@localhost",
          "-c", "commit.gpgsign=false"]

results = []


def case(name):
    def wrap(fn):
        results.append((name, fn))
        return fn
    return wrap


def run(cmd, cwd, env=None, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s"
                             % (" ".join(cmd), proc.returncode, proc.stdout))
    return proc


class Scratch:
    """A clone of the repository with its own prepared tree."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fork-tooling-")
        self.repo = os.path.join(self.dir, "repo")
        run(["git", "clone", "-q", TOP, self.repo], cwd=self.dir)
        self.tree = os.path.join(self.repo, "build", "qemu")

    def prepare(self, check=True):
        return run(["fork/prepare"], cwd=self.repo, check=check)

    def export(self, check=True):
        return run(["fork/export-patches"], cwd=self.repo, check=check)

    def git_tree(self, *args):
        return run(["git"] + GIT_ID + list(args), cwd=self.tree)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


scratch = None


@case("the series applies to the pinned tarball from scratch")
def test_prepare_from_scratch():
    global scratch
    scratch = Scratch()
    scratch.prepare()
    series = [line.strip() for line in
              open(os.path.join(scratch.repo, "patches", "series"))
              if line.strip() and not line.startswith("#")]
    log = scratch.git_tree("log", "--format=%s", "upstream..HEAD").stdout
    assert len(log.splitlines()) == len(series), log
    # The overlay is linked in, and no overlay file shadows an upstream one.
    link = os.path.join(scratch.tree, "tests", "fork", "test-tooling.py")
    assert os.path.islink(link), link
    clash = run(["git", "ls-tree", "-r", "--name-only", "upstream"],
                cwd=scratch.tree).stdout.splitlines()
    tracked = run(["git", "ls-files"], cwd=scratch.repo).stdout.splitlines()
    shadowed = set(clash) & set(t for t in tracked if "/" in t and
                                not t.startswith(("patches/", "fork/")))
    assert not shadowed, shadowed


@case("a re-export of unchanged work changes no byte")
def test_reexport_is_stable():
    scratch.export()
    status = run(["git", "status", "--porcelain"], cwd=scratch.repo).stdout
    assert status == "", status


@case("prepare refuses to overwrite uncommitted edits to upstream files")
def test_refuses_dirty_tree():
    path = os.path.join(scratch.tree, "VERSION")
    with open(path, "a") as f:
        f.write("local edit\n")
    # A changed series forces prepare to want to re-apply it.
    with open(os.path.join(scratch.repo, "patches", "series"), "a") as f:
        f.write("# touched\n")
    proc = scratch.prepare(check=False)
    assert proc.returncode != 0, proc.stdout
    assert "uncommitted changes" in proc.stdout, proc.stdout
    assert "local edit" in open(path).read()
    run(["git", "checkout", "--", "VERSION"], cwd=scratch.tree)


@case("prepare refuses to drop commits not exported to patches/")
def test_refuses_unexported_commit():
    path = os.path.join(scratch.tree, "VERSION")
    with open(path, "a") as f:
        f.write("committed edit\n")
    scratch.git_tree("commit", "-q", "-a", "-m", "local change")
    proc = scratch.prepare(check=False)
    assert proc.returncode != 0, proc.stdout
    assert "make export-patches" in proc.stdout, proc.stdout
    # Exporting keeps it: it becomes a patch, and prepare is happy again.
    scratch.export()
    assert any("local-change" in p for p in
               os.listdir(os.path.join(scratch.repo, "patches")))
    scratch.prepare()
    assert "committed edit" in open(path).read()


@case("an overlay file may not shadow an upstream file")
def test_overlay_may_not_shadow():
    path = os.path.join(scratch.repo, "util", "cutils.c")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("/* not allowed */\n")
    proc = scratch.prepare(check=False)
    os.unlink(path)
    assert proc.returncode != 0, proc.stdout
    assert "also exists upstream" in proc.stdout, proc.stdout


@case("fetch refuses a tarball that does not match the pin")
def test_fetch_checks_pin():
    cache = os.path.join(scratch.dir, "cache")
    os.makedirs(cache)
    pin = os.path.join(scratch.repo, "fork", "pin")
    text = open(pin).read()
    with open(pin, "w") as f:
        f.write(text.replace("UPSTREAM_SIZE=", "UPSTREAM_SIZE=1"))
    env = dict(os.environ, COLO_HA_CACHE=cache)
    proc = run(["fork/fetch"], cwd=scratch.repo, env=env, check=False)
    with open(pin, "w") as f:
        f.write(text)
    assert proc.returncode != 0, proc.stdout
    assert "does not match the pin" in proc.stdout, proc.stdout
    assert not os.path.exists(os.path.join(
        cache, "qemu_10.2.2+ds.orig.tar.xz"))


def main():
    print("1..%d" % len(results), flush=True)
    failed = 0
    try:
        for i, (name, fn) in enumerate(results, 1):
            try:
                fn()
                print("ok %d - %s" % (i, name), flush=True)
            except Exception as e:  # report and go on with the next case
                failed += 1
                print("not ok %d - %s" % (i, name))
                for line in str(e).splitlines()[-30:]:
                    print("# " + line)
                sys.stdout.flush()
    finally:
        if scratch:
            scratch.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
