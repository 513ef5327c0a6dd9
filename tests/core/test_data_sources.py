"""Data sources: the procedural families, WebDataset shards and TFRecord files (written by the tests)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i1lab.data import webdataset
from i1lab.data.images import encode_png
from i1lab.data.pipeline import example_dataset
from i1lab.data.sources import DataError, open_source
from i1lab.data.tfrecord import crc32c, decode_example, encode_example, masked_crc, write_tfrecord
from i1lab.errors import I1labError
from i1lab.spec.run import DataSpec, SourceSpec


def source(**kw: object) -> SourceSpec:
    return SourceSpec.model_validate({"name": "s", "count": 1000, **kw})


@pytest.mark.parametrize("family", ["shapes", "textured", "words"])
def test_procedural_families_are_deterministic_with_short_and_long_captions(family: str) -> None:
    src = open_source(source(family=family), 32)
    again = open_source(source(family=family), 32)
    for i in (0, 1, 999):
        ex, ex2 = src[i], again[i]
        assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
        assert np.array_equal(ex["image"], ex2["image"]) and ex["long"] == ex2["long"]
        assert ex["short"] and ex["long"] and ex["index"] == i and ex["source"] == "s"
        assert min(len(c.split()) for c in ex["long"]) > max(len(c.split()) for c in ex["short"])
    assert not np.array_equal(src[0]["image"], src[1]["image"])
    other_name = open_source(source(name="t", family=family), 32)
    assert not np.array_equal(src[0]["image"], other_name[0]["image"])
    with pytest.raises(IndexError):
        src[1000]


def test_families_differ_in_what_they_draw() -> None:
    plain = open_source(source(), 32)[3]
    textured = open_source(source(family="textured"), 32)[3]
    words = open_source(source(family="words"), 32)[3]
    grey = np.all(plain["image"] == 128, axis=-1).mean()
    assert grey > 0.5  # the benchmark domain: objects on flat grey
    assert np.all(textured["image"] == 128, axis=-1).mean() < 0.05  # the grey is replaced
    assert len(np.unique(textured["image"].reshape(-1, 3), axis=0)) > 2
    assert "background" in textured["short"][0] and "plain grey" not in textured["long"][0]
    assert '"' in words["short"][0] and any(w in words["long"][0] for w in ("letters", "lettering"))


def test_unknown_family_and_too_small_resolution_are_one_line_errors() -> None:
    with pytest.raises(I1labError, match="unknown family 'fractal'; known: shapes, textured, words"):
        open_source(source(family="fractal"), 32)
    with pytest.raises(I1labError, match=r"needs data\.resolution >= 16"):
        open_source(source(family="textured"), 8)
    assert open_source(source(family="words"), 8)[0]["image"].shape == (8, 8, 3)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, shards: int, per_shard: int, captions: int = 3) -> list[np.ndarray]:
    """``shards`` tar files of ``per_shard`` 24x20 PNG samples each, with ``captions`` long captions and
    one short one per sample in a JSON member (and a stray member without image)."""
    images: list[np.ndarray] = []
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tarfile.open(folder / f"shard-{s:03d}.tar", "w") as tar:
            for _ in range(per_shard):
                n = len(images)
                img = np.full((20, 24, 3), n % 256, np.uint8)
                img[:, :4] = (255, 0, 0)
                images.append(img)
                longs = [f"long {n} v{c}" for c in range(captions)]
                record = {"captions": longs, "short_caption": f"short {n}"}
                _member(tar, f"s{n:05d}.png", encode_png(img))
                _member(tar, f"s{n:05d}.json", json.dumps(record).encode())
            _member(tar, "orphan.json", b"{}")
    return images


def test_webdataset_source_reads_samples_by_random_access(tmp_path: Path) -> None:
    images = write_shards(tmp_path / "wds", shards=3, per_shard=4)
    spec = source(kind="webdataset", path=str(tmp_path / "wds" / "*.tar"), count=12)
    before = webdataset.builds
    src = open_source(spec, 16)
    assert len(src) == 12
    for i in (11, 0, 5):  # any order
        ex = src[i]
        assert ex["long"] == [f"long {i} v{c}" for c in range(3)] and ex["short"] == [f"short {i}"]
        # shorter edge (20) to 16, then the centre crop: the red band at the left is cropped away
        assert ex["image"].shape == (16, 16, 3)
        assert abs(int(ex["image"][8, 8, 1]) - int(images[i][0, 12, 1])) <= 1
    open_source(spec, 16)
    assert webdataset.builds == before + 1  # the index is built once per process


def test_webdataset_single_caption_and_txt_members(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    with tarfile.open(folder / "a.tar", "w") as tar:
        _member(tar, "x/0.jpg", _jpeg())
        _member(tar, "x/0.json", json.dumps({"caption": "just one"}).encode())
        _member(tar, "x/1.jpg", _jpeg())
        _member(tar, "x/1.txt", b"from a text member\n")
        _member(tar, "x/2.jpg", _jpeg())  # no caption at all: "" when drawn
    src = open_source(source(kind="webdataset", path=str(folder / "*.tar"), count=3), 16)
    assert (src[0]["long"], src[1]["long"], src[2]["long"]) == (["just one"], ["from a text member"], [])
    data = DataSpec.model_validate(
        {"sources": [{"name": "w", "kind": "webdataset", "path": str(folder / "*.tar"), "count": 3}]}
        | {"resolution": 16}
    )
    ds = example_dataset(data, seed=0)
    assert {ds[i]["caption"] for i in range(3)} == {"just one", "from a text member", ""}


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_webdataset_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(I1labError, match="no shard matches"):
        open_source(source(kind="webdataset", path=str(tmp_path / "none-*.tar")), 16)
    # no path: the folder of the source's name in the data directory
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("I1LAB_DATA_DIR", str(tmp_path / "data"))
        with pytest.raises(I1labError, match=f"data source s: no shard matches '{tmp_path}/data/s'$"):
            open_source(source(kind="webdataset"), 16)
        write_shards(tmp_path / "data" / "s", shards=1, per_shard=2)
        assert len(open_source(source(kind="webdataset", count=2), 16)) == 2
    write_shards(tmp_path / "w", shards=1, per_shard=2)
    with pytest.raises(I1labError, match=r"count is 5 but the shards .* hold 2 samples"):
        open_source(source(kind="webdataset", path=str(tmp_path / "w" / "*.tar"), count=5), 16)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.tar").write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(I1labError, match="not a readable uncompressed tar shard"):
        open_source(source(kind="webdataset", path=str(tmp_path / "bad" / "*.tar")), 16)
    broken = tmp_path / "broken"
    broken.mkdir()
    with tarfile.open(broken / "b.tar", "w") as tar:
        _member(tar, "0.png", b"\x89PNG garbage")
    src = open_source(source(kind="webdataset", path=str(broken / "*.tar"), count=1), 16)
    with pytest.raises(DataError, match=r"s\[0\] \(b.tar:0\): cannot decode the image"):
        src[0]


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert masked_crc(b"") == (((0 >> 15) | (0 << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_tf_example_round_trip_and_wire_compatibility() -> None:
    data = encode_example({"image": b"\x00\x01", "caption": ["a", "b"], "n": [3, 4], "f": [0.5]})
    assert decode_example(data) == {"image": [b"\x00\x01"], "caption": [b"a", b"b"], "n": [3, 4], "f": [0.5]}
    # tf.train.Example wire format, written by hand: features(1) { feature(1) { key(1) "n" value(2)
    # { int64_list(3) { value(1) packed [7] } } } }
    int64_list = b"\x0a\x01\x07"
    feature = b"\x1a" + bytes([len(int64_list)]) + int64_list
    entry = b"\x0a\x01n" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert decode_example(b"\x0a" + bytes([len(features)]) + features) == {"n": [7]}


def test_tfrecord_source_reads_i1_style_records(tmp_path: Path) -> None:
    records = []
    for n in range(5):
        img = np.full((16, 16, 3), 40 * n, np.uint8)
        records.append(encode_example({"image": encode_png(img), "caption": [f"cap {n} a", f"cap {n} b"]}))
    write_tfrecord(tmp_path / "d-train.tfrecord-00000-of-00002", records[:3])
    write_tfrecord(tmp_path / "d-train.tfrecord-00001-of-00002", records[3:])
    src = open_source(source(kind="tfrecord", path=str(tmp_path / "d-train.tfrecord-*"), count=5), 16)
    for n in (4, 0, 2):
        ex = src[n]
        assert ex["long"] == [f"cap {n} a", f"cap {n} b"] and ex["short"] == []
        assert int(ex["image"][0, 0, 0]) == 40 * n
    folder = open_source(source(kind="tfrecord", path=str(tmp_path), count=5), 16)  # a TFDS folder
    assert folder[4]["long"] == ["cap 4 a", "cap 4 b"]
    raw = (tmp_path / "d-train.tfrecord-00000-of-00002").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(raw[:-7])
    with pytest.raises(I1labError, match="truncated TFRecord record"):
        open_source(source(kind="tfrecord", path=str(tmp_path / "cut.tfrecord"), count=1), 16)
    flipped = bytearray(raw)
    flipped[3] ^= 0xFF
    (tmp_path / "crc.tfrecord").write_bytes(bytes(flipped))
    with pytest.raises(I1labError, match="CRC mismatch"):
        open_source(source(kind="tfrecord", path=str(tmp_path / "crc.tfrecord"), count=1), 16)
