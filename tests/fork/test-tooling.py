#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""TAP tests of the fork's own machinery (fork/): the pin is enforced, the
series applies to the pristine tarball from scratch, a re-export changes no
byte, work that only lives in the prepared tree is never overwritten, an
export never overwrites newer patches, fork/check enforces timeouts and TAP
plans, and a plain `make` installs nothing.

Each case works in a scratch clone of this repository that holds its
working tree (uncommitted and new files included), so what is tested is
what the developer is about to commit, and the developer's build/qemu is
never touched.  The upstream tarball comes from the shared cache (fetched
once); no case downloads anything.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

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
        self.copy_working_tree()

    def copy_working_tree(self):
        """Make the scratch clone hold TOP's working tree, committed."""
        files = run(["git", "ls-files", "-z", "-co", "--exclude-standard"],
                    cwd=TOP).stdout.split("\0")
        for f in filter(None, files):
            src = os.path.join(TOP, f)
            dst = os.path.join(self.repo, f)
            if os.path.lexists(src):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst, follow_symlinks=False)
            elif os.path.lexists(dst):
                os.unlink(dst)
        run(["git", "add", "-A"], cwd=self.repo)
        run(["git"] + GIT_ID + ["commit", "-q", "--allow-empty", "-m",
                                "working tree"], cwd=self.repo)

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
    series = os.path.join(scratch.repo, "patches", "series")
    before = open(series).read()
    with open(series, "a") as f:
        f.write("# touched\n")
    proc = scratch.prepare(check=False)
    with open(series, "w") as f:
        f.write(before)
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
    # A changed series makes prepare want to re-apply it.
    series = os.path.join(scratch.repo, "patches", "series")
    before = open(series).read()
    with open(series, "a") as f:
        f.write("# touched\n")
    proc = scratch.prepare(check=False)
    with open(series, "w") as f:
        f.write(before)
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
    # A local "archive" (file://) serving a wrong tarball: no download.
    bad = os.path.join(scratch.dir, "bad.tar.xz")
    with open(bad, "wb") as f:
        f.write(b"not the pinned tarball\n")
    pin = os.path.join(scratch.repo, "fork", "pin")
    text = open(pin).read()
    lines = [line for line in text.splitlines()
             if not line.startswith("UPSTREAM_URL=")]
    with open(pin, "w") as f:
        f.write("\n".join(lines) + "\nUPSTREAM_URL=file://%s\n" % bad)
    env = dict(os.environ, COLO_HA_CACHE=cache)
    proc = run(["fork/fetch"], cwd=scratch.repo, env=env, check=False)
    with open(pin, "w") as f:
        f.write(text)
    assert proc.returncode != 0, proc.stdout
    assert "does not match the pin" in proc.stdout, proc.stdout
    assert not os.path.exists(os.path.join(
        cache, "qemu_10.2.2+ds.orig.tar.xz"))


@case("export-patches refuses when patches/ is newer than build/qemu")
def test_export_refuses_newer_patches():
    series = os.path.join(scratch.repo, "patches", "series")
    before = open(series).read()
    names = sorted(os.listdir(os.path.join(scratch.repo, "patches")))
    # As after a 'git pull' that brought a patch, without 'make prepare'.
    pulled = os.path.join(scratch.repo, "patches", "9999-pulled.patch")
    with open(pulled, "w") as f:
        f.write("From: pulled\n")
    with open(series, "a") as f:
        f.write("9999-pulled.patch\n")
    proc = scratch.export(check=False)
    assert proc.returncode != 0, proc.stdout
    assert "changed since build/qemu was prepared" in proc.stdout, proc.stdout
    assert os.path.exists(pulled)
    assert "9999-pulled.patch" in open(series).read()
    os.unlink(pulled)
    with open(series, "w") as f:
        f.write(before)
    assert sorted(os.listdir(os.path.join(scratch.repo, "patches"))) == names


@case("a series naming a missing patch stops the script (lib.sh)")
def test_missing_patch_stops():
    series = os.path.join(scratch.repo, "patches", "series")
    before = open(series).read()
    with open(series, "a") as f:
        f.write("9998-missing.patch\n")
    proc = run(["sh", "-c", 'set -eu; here=$PWD/fork; top=$PWD; '
                '. fork/lib.sh; want=$(wanted_id); echo "reached $want"'],
               cwd=scratch.repo, check=False)
    with open(series, "w") as f:
        f.write(before)
    assert proc.returncode != 0, proc.stdout
    assert "names missing 9998-missing.patch" in proc.stdout, proc.stdout
    assert "reached" not in proc.stdout, proc.stdout


@case("fork/check kills a suite past its timeout, counts missing cases "
      "and a TODO case as todo, not passed")
def test_check_timeout_and_plan():
    t = os.path.join(scratch.repo, "t")
    os.makedirs(t, exist_ok=True)
    scripts = {
        # announces 3 cases, reports 1, exits 0
        "short.py": 'print("1..3")\nprint("ok 1 - one")\n',
        # never finishes
        "hang.py": 'import signal\nprint("1..1", flush=True)\n'
                   'signal.pause()\n',
        # no plan
        "noplan.py": 'print("ok 1 - one")\n',
        # a known gap, reported as such
        "todo.py": 'print("1..2")\nprint("ok 1 - one")\n'
                   'print("not ok 2 - two # TODO known gap")\n',
    }
    for name, text in scripts.items():
        with open(os.path.join(t, name), "w") as f:
            f.write(text)
    suites = os.path.join(scratch.repo, "fork", "check-suites")
    before = open(suites).read()
    with open(suites, "w") as f:
        f.write("script t/short.py\ntimeout=2 script t/hang.py\n"
                "script t/noplan.py\nscript t/todo.py\n")
    start = time.monotonic()
    proc = run(["fork/check"], cwd=scratch.repo, check=False)
    with open(suites, "w") as f:
        f.write(before)
    shutil.rmtree(t)
    assert proc.returncode != 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert "killed after 2 s" in proc.stdout, proc.stdout
    # short: 1 passed 2 missing; hang: 1 missing + timeout; noplan: 1 + 1;
    # todo: 1 passed, 1 todo
    assert lines[-1] == "3 passed, 5 failed, 0 skipped, 1 todo", proc.stdout
    assert time.monotonic() - start < 600, proc.stdout


@case("a plain make installs no package; make check and make demo do")
def test_make_installs_nothing():
    for goal, want in (("all", "fork/install-deps --check"),
                       ("prepare", "fork/install-deps --check"),
                       ("check", "fork/install-deps"),
                       ("demo", "fork/install-deps")):
        out = run(["make", "-n", goal], cwd=scratch.repo, check=False).stdout
        cmds = [line.strip() for line in out.splitlines()
                if "install-deps" in line]
        assert cmds and cmds[0] == want, (goal, out)


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
