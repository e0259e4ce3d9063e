"""xlt.io.building_dir, the one way xlt builds a folder: swapped in whole on success, gone on an exception,
never touching what another live process is building."""

import os
import subprocess
import sys

import pytest

from xlt.io import building_dir, current_umask, host_tag


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def old_folder(tmp_path):
    target = tmp_path / "out"
    (target / "sub").mkdir(parents=True)
    (target / "old.txt").write_text("old")
    (target / "sub" / "keep.txt").write_text("old too")
    return target


def test_the_built_folder_replaces_the_target_whole(tmp_path):
    target = old_folder(tmp_path)
    with building_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".out.xlt-tmp.{host_tag()}.{os.getpid()}.")
        assert list(tmp.iterdir()) == [] and snapshot(target)["old.txt"] == b"old"  # the old one stays meanwhile
        (tmp / "new.txt").write_text("new")
    assert snapshot(target) == {"new.txt": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_exception_leaves_the_target_as_it_was_and_no_temp_folder(tmp_path):
    target = old_folder(tmp_path)
    before = snapshot(target)
    with pytest.raises(RuntimeError, match="killed"), building_dir(target) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("killed")
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RuntimeError), building_dir(tmp_path / "fresh"):
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # a new target is not created either


def test_a_live_builders_temp_folder_is_left_alone_and_a_dead_ones_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live_name = f".out.xlt-tmp.{host_tag()}.{os.getppid()}.abc123"  # the process that started pytest: alive
    dead_name = f".out.xlt-tmp.{host_tag()}.{int(dead.stdout)}.abc123"
    for name in (live_name, dead_name):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_text("theirs")
    with building_dir(tmp_path / "out") as tmp:
        (tmp / "mine").write_text("mine")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live_name, "out"]
    assert (tmp_path / live_name / "part").read_text() == "theirs" and snapshot(tmp_path / "out") == {"mine": b"mine"}


def test_a_cache_folder_another_process_completed_first_is_kept(tmp_path):
    target = tmp_path / "model"
    with building_dir(target, complete_marker=".done") as tmp:
        (tmp / "weights").write_text("mine")
        target.mkdir()  # meanwhile another process published its build
        (target / "weights").write_text("theirs")
        (target / ".done").write_text("ok\n")
    assert snapshot(target) == {".done": b"ok\n", "weights": b"theirs"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_crashed_cache_build_is_replaced_and_marked_complete(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("half")  # no marker: a build that crashed
    with building_dir(target, complete_marker=".done") as tmp:
        (tmp / "weights").write_text("whole")
    assert snapshot(target) == {".done": b"ok\n", "weights": b"whole"}


def test_modes_follow_the_umask_or_the_replaced_folder(tmp_path):
    with building_dir(tmp_path / "new") as tmp:
        (tmp / "f").write_text("x")
        os.chmod(tmp / "f", 0o600)  # as safetensors writes its files
    assert (tmp_path / "new" / "f").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~current_umask()
    kept = tmp_path / "kept"
    kept.mkdir()
    kept.chmod(0o750)
    with building_dir(kept, keep_mode=True) as tmp:
        (tmp / "f").write_text("x")
    assert kept.stat().st_mode & 0o7777 == 0o750


def test_a_copy_built_to_be_discarded_is_not_published(tmp_path):
    with building_dir(tmp_path / "out", publish=False) as tmp:
        (tmp / "f").write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_target_appears_whole_or_not_at_all(tmp_path):
    """What plots are written through: the block writes a temp sibling, renamed onto the target at its end."""
    from xlt.io import atomic_target, file_mode

    target = tmp_path / "sub" / "plot.png"
    with atomic_target(target, suffix=".png") as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and not target.exists()
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first" and target.stat().st_mode & 0o777 == file_mode()
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_target(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("half way")
    assert target.read_bytes() == b"first" and sorted(p.name for p in target.parent.iterdir()) == ["plot.png"]
