"""Open a job's data wherever `${storage}` puts it: a local path or a filesystem URI.

On the local platform a job's paths are plain directories; on a cluster stack they are URIs
(hdfs://namenode:8020/teams/feed/..., s3://bucket/teams/feed/...). The example scripts and
FeatureSpec read and write through these functions so one job spec runs in both places:

- plain paths keep the exact local behaviour they had (pathlib, platform_cli.atomic);
- URIs (file://, hdfs://, s3://; s3a://, which is what an s3 platform stack renders for Spark's
  S3A connector, is read as s3://) go through pyarrow.fs, which reaches
  HDFS through libhdfs (the image needs Java, HADOOP_HOME or ARROW_LIBHDFS_DIR, and CLASSPATH
  from `hadoop classpath --glob`) and S3 through the AWS SDK (credentials from the environment).

Spark opens URIs itself: pass it `join(...)` strings, not pathlib paths (pathlib turns
"hdfs://nn/x" into "hdfs:/nn/x"). TensorFlow's checkpoints and SavedModels go through
`tf_checkpoint_dir` and `tf_save_model`: TensorFlow writes the URI itself where it has a
filesystem for it, else a local copy is moved through pyarrow (see there).

Whole-or-nothing output directories (`staged_dir`):
- plain paths: built in a sibling directory and renamed into place (platform_cli.atomic);
- file:// and hdfs://: the same - a directory rename is atomic on a local disk and on HDFS (one
  namenode operation) - and a `_SUCCESS` marker is written inside before the rename;
- object stores (s3://, gs://, ...): there is no rename (a "move" copies object by object, and
  pyarrow refuses to move S3 directories), so the directory is cleared, written in place and
  `_SUCCESS` is written last, as Spark and Hadoop's committers do. `require_complete` is what
  readers check: a directory without the marker is a run that failed or is still writing.

pyarrow is imported inside the functions: the CLI imports FeatureSpec, and must start fast.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

from platform_cli import atomic
from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.fs

Location = Union[str, "os.PathLike[str]"]

SUCCESS_MARKER = "_SUCCESS"
# Filesystems (pyarrow type_name) whose directory rename is atomic, so outputs can be staged
# aside and moved into place. Everything else is treated as an object store.
RENAMES_ATOMICALLY = frozenset({"local", "hdfs"})
# Hadoop's name for S3 (what Spark's s3a connector reads) is the same bucket to pyarrow.
_SCHEME_ALIASES = {"s3a": "s3"}
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class StorageError(PlinthError):
    pass


def run_script(main: Callable[[], int]) -> None:
    """A job script's entry point: exit with main()'s code; a storage problem (a missing or
    unreachable location) exits 1 with one line, not a traceback."""
    import sys

    try:
        sys.exit(main())
    except StorageError as error:
        sys.exit(f"error: {error}")


def is_uri(location: Location) -> bool:
    """True for scheme://... locations (file:// included), False for plain local paths."""
    return bool(_URI.match(os.fspath(location)))


def join(location: Location, *parts: str) -> str:
    """`location/part/...` as a string; URIs keep their scheme and authority intact."""
    if not is_uri(location):
        return os.path.join(os.fspath(location), *parts)
    return "/".join([os.fspath(location).rstrip("/"), *(p.strip("/") for p in parts)])


def native(location: Location) -> str:
    """`location` as libraries outside Hadoop (pyarrow, TensorFlow) name it: s3a:// -> s3://."""
    location = os.fspath(location)
    match = _URI.match(location)
    scheme = match.group(1).lower() if match else ""
    return _SCHEME_ALIASES[scheme] + location[len(scheme):] if scheme in _SCHEME_ALIASES else location


def filesystem(location: Location) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow filesystem for `location` and the path inside it."""
    from pyarrow import fs

    location = os.fspath(location)
    if not is_uri(location):
        return fs.LocalFileSystem(), os.path.abspath(location)
    scheme = _URI.match(location).group(1).lower()
    try:
        return fs.FileSystem.from_uri(native(location))
    except (ValueError, OSError) as error:  # ArrowInvalid is a ValueError
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StorageError(f"cannot open {location}: {first_line}", _fix_for(scheme)) from None


def _fix_for(scheme: str) -> str:
    if scheme == "hdfs":
        return ("the job's image needs Java and libhdfs: set JAVA_HOME, HADOOP_HOME (or ARROW_LIBHDFS_DIR) "
                "and CLASSPATH=$(hadoop classpath --glob)")
    if scheme in ("s3", "s3a"):
        return ("give the job S3 credentials and endpoint in its environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_REGION, AWS_ENDPOINT_URL)")
    return "use a local path or a file://, hdfs:// or s3:// URI"


def exists(location: Location) -> bool:
    if not is_uri(location):
        return Path(location).exists()
    from pyarrow import fs

    filesystem_, path = filesystem(location)
    return filesystem_.get_file_info(path).type != fs.FileType.NotFound


def open_input(location: Location) -> BinaryIO:
    if not is_uri(location):
        return open(location, "rb")  # the caller closes it
    filesystem_, path = filesystem(location)
    return filesystem_.open_input_file(path)


def open_output(location: Location) -> BinaryIO:
    """A new file (parent directories created). Not atomic on its own: use it inside
    `staged_dir`, or use write_text/write_bytes for a single file."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return open(location, "wb")  # the caller closes it
    filesystem_, path = filesystem(location)
    filesystem_.create_dir(_parent(path), recursive=True)
    return filesystem_.open_output_stream(path)


def read_bytes(location: Location) -> bytes:
    with open_input(location) as stream:
        return stream.read()


def read_text(location: Location) -> str:
    return read_bytes(location).decode()


def write_bytes(location: Location, data: bytes) -> None:
    """Write a whole file that readers see complete or not at all."""
    if not is_uri(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
        return
    filesystem_, path = filesystem(location)
    filesystem_.create_dir(_parent(path), recursive=True)
    if filesystem_.type_name not in RENAMES_ATOMICALLY:
        # An object store's PUT is all or nothing: the object appears only when the upload ends.
        with filesystem_.open_output_stream(path) as stream:
            stream.write(data)
        return
    tmp = _sibling(path, f"tmp-{uuid.uuid4().hex[:8]}")  # one per writer
    try:
        with filesystem_.open_output_stream(tmp) as stream:
            stream.write(data)
        try:
            filesystem_.move(tmp, path)  # a local rename replaces the old file atomically
        except OSError:
            # HDFS's rename refuses to replace an existing file: remove it, then move.
            filesystem_.delete_file(path)
            filesystem_.move(tmp, path)
    finally:
        _delete_quietly(filesystem_, tmp)


def write_text(location: Location, text: str) -> None:
    write_bytes(location, text.encode())


def write_json(location: Location, data: object) -> None:
    write_text(location, json.dumps(data, indent=2, default=str) + "\n")


def copy_file(source: Location, destination: Location) -> None:
    write_bytes(destination, read_bytes(source))


def download_dir(location: Location, local_dir: Location) -> bool:
    """Copy the files under `location` into `local_dir`; False when `location` does not exist."""
    from pyarrow import fs

    if not exists(location):
        return False
    filesystem_, path = filesystem(location)
    fs.copy_files(path, os.fspath(local_dir), source_filesystem=filesystem_, destination_filesystem=fs.LocalFileSystem())
    return True


def upload_dir(local_dir: Location, location: Location, last: str | None = None) -> None:
    """Make `location` hold `local_dir`'s files: copy each (file `last` after all the others, so
    a reader that goes by it never sees it before what it names), then delete files that are no
    longer in `local_dir`."""
    from pyarrow import fs

    local_dir = Path(local_dir)
    names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
    for name in sorted(names, key=lambda n: n == last):
        write_bytes(join(location, name), (local_dir / name).read_bytes())
    filesystem_, path = filesystem(location)
    for info in filesystem_.get_file_info(fs.FileSelector(path, recursive=True)):
        if info.type == fs.FileType.File and info.path[len(path):].lstrip("/") not in names:
            filesystem_.delete_file(info.path)


# TensorFlow writes checkpoints and SavedModels itself, through its own filesystems: the pip
# build of TensorFlow 2.15 has local and file:// (and gs://), while hdfs:// and s3:// live in
# tensorflow-io. Where TensorFlow cannot open a location it writes to the local disk and the
# files are copied through pyarrow, which reaches HDFS through libhdfs and S3 by itself.


def tf_can_open(tf, location: Location) -> bool:
    """Whether TensorFlow has a filesystem for `location` (importing tensorflow-io if present)."""
    if not is_uri(location):
        return True
    location = native(location)
    if location.split("://", 1)[0].lower() in ("hdfs", "s3"):
        try:
            import tensorflow_io  # noqa: F401 - registers hdfs:// and s3:// with tf.io.gfile
        except ImportError:
            pass
    try:
        tf.io.gfile.exists(location)
    except tf.errors.UnimplementedError:  # "File system scheme '...' not implemented"
        return False
    return True


def tf_save_model(tf, obj, location: Location, **kwargs) -> None:
    """tf.saved_model.save to a local path or a URI (through a local copy where TensorFlow has
    no filesystem for it). Use inside staged_dir: the copy itself is not atomic."""
    if tf_can_open(tf, location):
        tf.saved_model.save(obj, native(location), **kwargs)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="plinth-savedmodel-") as local:
        tf.saved_model.save(obj, local, **kwargs)
        upload_dir(local, location)


def tf_checkpoint_dir(tf, location: Location) -> tuple[str, Callable[[], None]]:
    """The directory to give tf.train.CheckpointManager for `location`, and what to call after
    each save. Where TensorFlow has no filesystem for it, that is a local directory first filled
    from `location` (so a restarted job resumes) and copied back after each save, the
    "checkpoint" state file last, so `location` always names a complete checkpoint."""
    if tf_can_open(tf, location):
        return native(location), lambda: None
    import atexit
    import shutil
    import tempfile

    local = tempfile.mkdtemp(prefix="plinth-checkpoints-")
    atexit.register(shutil.rmtree, local, True)
    download_dir(location, local)
    return local, lambda: upload_dir(local, location, last="checkpoint")


def read_parquet(location: Location, columns: list[str] | None = None) -> pyarrow.Table:
    """A Parquet file or a directory of them (files starting with "_" or "." are skipped)."""
    import pyarrow.parquet as pq

    if not is_uri(location):
        return pq.read_table(os.fspath(location), columns=columns)
    filesystem_, path = filesystem(location)
    return pq.read_table(path, columns=columns, filesystem=filesystem_)


def require_complete(location: Location) -> None:
    """Refuse a URI directory without its `_SUCCESS` marker (see the module docstring). Plain
    local directories are renamed into place whole, so they need no marker."""
    if is_uri(location) and not exists(join(location, SUCCESS_MARKER)):
        what = "does not exist" if not exists(location) else f"has no {SUCCESS_MARKER} marker"
        raise StorageError(f"{os.fspath(location)} {what}",
                           "run the step that writes it (a directory without the marker is a run that failed or is still writing)")


@contextmanager
def staged_dir(location: Location) -> Iterator[Path | str]:
    """Yield a directory to write `location`'s new contents into; when the block succeeds they
    replace `location` whole, when it fails `location` is not left looking complete. Write into
    it with join(yielded, name): a Path for plain paths, a URI string otherwise."""
    if not is_uri(location):
        with atomic.staged_dir(Path(location)) as tmp:
            yield tmp
        return
    filesystem_, path = filesystem(location)
    if filesystem_.type_name in RENAMES_ATOMICALLY:
        with _staged_and_renamed(filesystem_, os.fspath(location), path) as tmp:
            yield tmp
    else:
        with _written_in_place(filesystem_, os.fspath(location), path) as tmp:
            yield tmp


@contextmanager
def _staged_and_renamed(filesystem_, location: str, path: str) -> Iterator[str]:
    """platform_cli.atomic.staged_dir on a pyarrow filesystem, plus the marker."""
    filesystem_.create_dir(_parent(path), recursive=True)
    suffix = f"tmp-{uuid.uuid4().hex[:8]}"
    tmp, tmp_location = _sibling(path, suffix), _sibling(location, suffix)
    filesystem_.create_dir(tmp, recursive=False)
    try:
        yield tmp_location
        _touch(filesystem_, f"{tmp}/{SUCCESS_MARKER}")
        old = _sibling(path, f"old-{uuid.uuid4().hex[:8]}")
        had_old = _exists(filesystem_, path)
        if had_old:
            filesystem_.move(path, old)
        try:
            filesystem_.move(tmp, path)
        except OSError:
            if had_old:
                filesystem_.move(old, path)  # put the previous version back rather than lose it
            raise
        if had_old:
            filesystem_.delete_dir(old)
    finally:
        if _exists(filesystem_, tmp):
            filesystem_.delete_dir(tmp)


@contextmanager
def _written_in_place(filesystem_, location: str, path: str) -> Iterator[str]:
    """Object stores: clear, write, then the marker last. The previous version is gone as soon
    as the write starts (as with Spark's overwrite mode); the marker says whether what is there
    is whole."""
    filesystem_.create_dir(path, recursive=True)
    filesystem_.delete_dir_contents(path)
    try:
        yield location
    except BaseException:
        filesystem_.delete_dir_contents(path, missing_dir_ok=True)  # no half dataset left to read
        raise
    _touch(filesystem_, f"{path}/{SUCCESS_MARKER}")


def _exists(filesystem_, path: str) -> bool:
    from pyarrow import fs

    return filesystem_.get_file_info(path).type != fs.FileType.NotFound


def _touch(filesystem_, path: str) -> None:
    with filesystem_.open_output_stream(path):
        pass


def _delete_quietly(filesystem_, path: str) -> None:
    if _exists(filesystem_, path):
        filesystem_.delete_file(path)


def _parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""


def _sibling(path: str, suffix: str) -> str:
    """A hidden name next to `path` (readers skip names starting with "."), e.g. .raw.tmp-1a2b."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.{suffix}"
