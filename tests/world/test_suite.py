import json

import numpy as np
import pytest
from PIL import Image

from retouch.world.edits import PIE_COUNTS
from retouch.world.suite import generate_edits, load_suite, rle_decode, rle_encode, type_counts, write_suite


def _pie_mask_decode(encoded_mask, image_shape):
    """PIE-Bench's reference decoder, written out as its evaluation code does it (loop per run)."""
    length = image_shape[0] * image_shape[1]
    mask_array = np.zeros((length,))
    for i in range(0, len(encoded_mask), 2):
        splice_len = min(encoded_mask[i + 1], length - encoded_mask[i])
        for j in range(splice_len):
            mask_array[encoded_mask[i] + j] = 1
    mask_array = mask_array.reshape(image_shape[0], image_shape[1])
    mask_array[0, :] = 1
    mask_array[-1, :] = 1
    mask_array[:, 0] = 1
    mask_array[:, -1] = 1
    return mask_array


def test_rle_round_trip_and_format():
    m = np.zeros((4, 5), bool)
    m[0, 1:3] = True
    m[1, 4] = m[2, 0] = True  # a run that wraps a row
    m[3, 4] = True
    rle = rle_encode(m)
    assert rle == [1, 2, 9, 2, 19, 1]
    assert np.array_equal(rle_decode(rle, (4, 5), border=False), m)
    assert rle_encode(np.zeros((3, 3), bool)) == []
    assert rle_encode(np.ones((2, 2), bool)) == [0, 4]


def test_decoder_clips_runs_and_applies_border_rule():
    dec = rle_decode([10, 100], (5, 5))
    ref = _pie_mask_decode([10, 100], (5, 5)).astype(bool)
    assert np.array_equal(dec, ref)
    assert dec[0].all() and dec[:, 0].all() and dec[:, -1].all() and dec[-1].all()


def test_type_counts_follow_pie_proportions():
    assert type_counts(700) == PIE_COUNTS
    for n in (1, 7, 35, 101, 1400):
        assert sum(type_counts(n).values()) == n
    assert type_counts(70) == {t: c // 10 for t, c in PIE_COUNTS.items()}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("suite")
    write_suite(d, n=30, seed=3)
    return d


def test_suite_in_pie_format_and_masks_decode_exactly(suite):
    mapping = json.loads((suite / "mapping_file.json").read_text())
    assert len(mapping) == 30
    edits = dict(generate_edits(30, 3))
    for cid, r in mapping.items():
        for k in ("image_path", "original_prompt", "editing_prompt", "editing_instruction", "editing_type_id", "blended_word", "mask"):
            assert k in r
        assert r["editing_type_id"] == cid[0]
        assert (suite / "annotation_images" / r["image_path"]).is_file()
        world_mask = edits[cid].mask
        decoded = _pie_mask_decode(r["mask"], world_mask.shape).astype(bool)
        border = np.zeros_like(world_mask)
        border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
        assert np.array_equal(decoded, world_mask | border)
        assert np.array_equal(rle_decode(r["mask"], world_mask.shape, border=False), world_mask)


def test_load_suite_gives_ground_truth(suite):
    cases = load_suite(suite)
    assert len(cases) == 30
    c = cases[0]
    assert c.load_image().shape == (128, 128, 3)
    assert c.load_target().shape == (128, 128, 3)
    assert c.target_scene is not None and not c.target_scene.same_content(c.source_scene)
    assert "[" not in c.source_prompt


def test_same_seed_same_suite(tmp_path):
    write_suite(tmp_path / "a", n=12, seed=9)
    write_suite(tmp_path / "b", n=12, seed=9)
    assert (tmp_path / "a" / "mapping_file.json").read_text() == (tmp_path / "b" / "mapping_file.json").read_text()
    with pytest.raises(FileExistsError):
        write_suite(tmp_path / "a", n=12, seed=9)


def test_reads_a_real_pie_bench_layout(tmp_path):
    """PIE-Bench ships jpgs at 512x512 and no ground truth; the same reader loads it."""
    img_dir = tmp_path / "annotation_images" / "1_change_object_80" / "1_artificial" / "1_animal"
    img_dir.mkdir(parents=True)
    Image.fromarray(np.full((512, 512, 3), 120, np.uint8)).save(img_dir / "111000000000.jpg")
    mapping = {
        "111000000000": {
            "image_path": "1_change_object_80/1_artificial/1_animal/111000000000.jpg",
            "original_prompt": "a [cat] sitting on a chair",
            "editing_prompt": "a [dog] sitting on a chair",
            "editing_instruction": "Change the cat to a dog",
            "editing_type_id": "1",
            "blended_word": "cat dog",
            "mask": [512 * 100 + 100, 50, 512 * 101 + 100, 50],
        }
    }
    (tmp_path / "mapping_file.json").write_text(json.dumps(mapping))
    (c,) = load_suite(tmp_path)
    assert c.target_scene is None and c.load_target() is None
    m = c.mask()
    assert m.shape == (512, 512) and m[100, 100:150].all() and not m[100, 150] and m[0].all()
    assert c.source_prompt == "a cat sitting on a chair"


def test_missing_suite_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mapping_file.json"):
        load_suite(tmp_path)
