"""Bad input fails before training with a message that says what to do."""

from __future__ import annotations

import pytest

from bench.errors import DatasetNotFoundError, PretrainedWeightsError
from bench.preflight import check_pretrained_weights, ensure_dataset

# A closed local port: the hub is "unreachable" the same way on every machine, instantly.
DEAD_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_missing_dataset_names_path_env_var_and_how_to_get_it(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("GEO_BENCH_DIR", str(tmp_path / "geobench"))
    cfg = compose_cfg("task=chesapeake")
    with pytest.raises(DatasetNotFoundError) as info:
        ensure_dataset(cfg.task)
    message = str(info.value)
    assert str(tmp_path / "geobench" / "segmentation_v1.0" / "m-chesapeake" / "default_partition.json") in message
    assert "$GEO_BENCH_DIR" in message and "currently" in message
    assert "geobench-download" in message


def test_missing_dataset_says_when_the_env_var_is_unset(compose_cfg, monkeypatch):
    monkeypatch.delenv("GEO_BENCH_DIR", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-home")
    with pytest.raises(DatasetNotFoundError, match=r"\$GEO_BENCH_DIR \(not set, so the default was used\)"):
        ensure_dataset(compose_cfg("task=chesapeake").task)


def test_synthetic_dataset_is_generated_on_first_use(compose_cfg, tmp_path):
    cfg = compose_cfg("task=synthetic_cls", f"data_dir={tmp_path / 'fresh'}")
    root = ensure_dataset(cfg.task)
    tifs = sorted(root.glob("train/class_*/*.tif"))
    assert len(tifs) == 32 and len(list(root.glob("val/class_*/*.tif"))) == 16
    import rasterio

    with rasterio.open(tifs[0]) as src:
        assert (src.count, src.width, src.height) == (6, 64, 64)
        assert src.crs is not None and src.descriptions[3] == "NIR_NARROW"


def test_synthetic_dataset_is_deterministic(tmp_path):
    from bench.data.synthetic import ensure_synthetic_dataset

    a = ensure_synthetic_dataset(tmp_path / "a", "segmentation")
    b = ensure_synthetic_dataset(tmp_path / "b", "segmentation")
    for name in ("train/tile_000_img.tif", "val/tile_007_mask.tif"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_unreachable_hub_for_pretrained_prithvi_explains_weights_and_local_checkpoint(
    compose_cfg, monkeypatch, tmp_path
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", DEAD_HUB["HF_ENDPOINT"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(PretrainedWeightsError) as info:
        check_pretrained_weights(compose_cfg("model=prithvi").model)
    message = str(info.value)
    assert (
        "model=prithvi needs pretrained weights ibm-nasa-geospatial/Prithvi-EO-2.0-300M/Prithvi_EO_V2_300M.pt"
        in message
    )
    assert "could not be reached" in message
    assert "model.model_args.backbone_ckpt_path=" in message
    assert "backbone_pretrained=false" in message


def test_offline_mode_without_cached_weights_is_explained(compose_cfg, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsError, match="HF_HUB_OFFLINE is set") as info:
        check_pretrained_weights(compose_cfg("model=resnet50").model)
    # timm's way to load a local file; the key is new to the config, hence Hydra's `+`...
    assert "+model.model_args.backbone_pretrained_cfg_overlay.file=DIR/model.safetensors" in str(info.value)
    # ...and none for a key the model declares, even as null.
    with pytest.raises(PretrainedWeightsError) as info:
        check_pretrained_weights(
            compose_cfg("model=resnet50", "+model.model_args.backbone_pretrained_cfg_overlay={file: null}").model
        )
    assert " model.model_args.backbone_pretrained_cfg_overlay.file=DIR/model.safetensors" in str(info.value)


def test_cached_weights_pass_without_network(compose_cfg, monkeypatch, tmp_path):
    from huggingface_hub import constants

    # Lay out a Hugging Face cache entry the way hf_hub_download leaves it.
    cache = tmp_path / "hf"
    snapshot = cache / "models--ibm-nasa-geospatial--Prithvi-EO-2.0-300M" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "Prithvi_EO_V2_300M.pt").write_bytes(b"weights")
    (cache / "models--ibm-nasa-geospatial--Prithvi-EO-2.0-300M" / "refs").mkdir()
    (cache / "models--ibm-nasa-geospatial--Prithvi-EO-2.0-300M" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    check_pretrained_weights(compose_cfg("model=prithvi").model)


def test_local_checkpoint_path_must_exist(compose_cfg, tmp_path):
    with pytest.raises(PretrainedWeightsError, match="model_args.backbone_ckpt_path=.*is not a file"):
        check_pretrained_weights(
            compose_cfg("model=prithvi", f"model.model_args.backbone_ckpt_path={tmp_path}/nope.pt").model
        )
    (tmp_path / "w.pt").write_bytes(b"x")
    check_pretrained_weights(compose_cfg("model=prithvi", f"model.model_args.backbone_ckpt_path={tmp_path}/w.pt").model)


def test_random_init_needs_no_weights(compose_cfg, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    check_pretrained_weights(compose_cfg("model=prithvi", "model.model_args.backbone_pretrained=false").model)
