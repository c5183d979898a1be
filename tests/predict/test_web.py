"""The web page's logic, without a browser: loading, degrading, clicking, comparing, charting."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from garasam.adapters import GaRAConfig, LoRAConfig, adapter_config, inject_adapters, save_adapters
from garasam.errors import ConfigError, DataError
from garasam.fast.cuda_graphs import EncoderGraphs
from garasam.predict import web
from garasam.predict.prompts import UserPrompt
from garasam.predict.web import (
    BOX,
    NEGATIVE,
    POSITIVE,
    PageState,
    WebApp,
    add_click,
    degrade,
    fit_working_size,
    load_sample,
    load_upload,
    rank_chart,
    render,
    sample_names,
    severity_range,
)


@pytest.fixture(scope="module")
def app() -> WebApp:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random tiny weights until they are bundled
        return WebApp.create(device="cpu")


def test_frozen_and_gara_share_one_base(app) -> None:
    frozen, gara = app.frozen.model, app.gara.model
    assert adapter_config(frozen) is None and isinstance(adapter_config(gara), GaRAConfig)
    plain_qkv = frozen.vision_encoder.layers[0].attn.qkv
    assert type(plain_qkv).__name__ == "Linear"
    assert gara.vision_encoder.layers[0].attn.qkv.base.weight is plain_qkv.weight
    assert gara.mask_decoder.iou_token.weight is frozen.mask_decoder.iou_token.weight
    if not (web.DEMO_ADAPTERS / "adapter_config.json").is_file():
        assert any("zero-initialised GaRA" in note for note in app.notes)


def test_compare_runs_both_models(app, image) -> None:
    prompt = UserPrompt(points=((60.0, 45.0),), labels=(1,))
    result = app.compare(image, prompt)
    assert result.frozen_mask.shape == result.gara_mask.shape == (90, 140)
    assert len(result.gates) == 6
    if any("zero-initialised GaRA" in note for note in app.notes):
        np.testing.assert_array_equal(result.frozen_mask, result.gara_mask)
        assert result.frozen_score == result.gara_score
    with pytest.raises(DataError, match="outside"):
        app.compare(image, UserPrompt(points=((500.0, 5.0),), labels=(1,)))


def test_the_fast_path_serves_both_models(app, image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fast = WebApp.create(device="cpu", fast=True)  # the default on CUDA
    assert any("Fast path" in note for note in fast.notes)
    assert all(isinstance(p.model.vision_encoder.graphs, EncoderGraphs) for p in (fast.frozen, fast.gara))
    plain_qkv = fast.frozen.model.vision_encoder.layers[0].attn.qkv
    assert fast.gara.model.vision_encoder.layers[0].attn.qkv.base.weight is plain_qkv.weight  # still one base
    assert plain_qkv.weight.dtype == torch.bfloat16
    prompt = UserPrompt(box=(10.0, 10.0, 80.0, 60.0))
    expected, got = app.compare(image, prompt), fast.compare(image, prompt)
    assert (got.frozen_mask == expected.frozen_mask).mean() > 0.98
    assert (got.gara_mask == expected.gara_mask).mean() > 0.98


@pytest.mark.parametrize(
    ("config", "limits"), [(GaRAConfig(r_low=2, r_high=4), (2, 4)), (LoRAConfig(rank=2), None)]
)
def test_user_adapters_are_loaded_into_the_twin_only(tmp_path, tiny_sam, image, config, limits) -> None:
    save_adapters(inject_adapters(tiny_sam, config), tmp_path / "adapters")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        app = WebApp.create(adapters=tmp_path / "adapters", device="cpu")
    assert app.rank_limits == limits
    # the folder's name, never the server path (issue 29, item 12)
    assert any("adapters in adapters." in note for note in app.notes)
    assert not any(str(tmp_path) in note for note in app.notes)
    assert adapter_config(app.frozen.model) is None
    assert type(adapter_config(app.gara.model)) is type(config)
    gates = app.compare(image, UserPrompt(box=(10.0, 10.0, 80.0, 60.0))).gates
    assert (gates is None) == (limits is None)  # LoRA has no gates to chart


def test_degrade_is_reproducible_and_clean_is_identity(image) -> None:
    assert np.array_equal(degrade(image, "robustseg", "clean"), image)
    fog = degrade(image, "robustseg", "fog")
    assert fog.shape == image.shape and fog.dtype == np.uint8 and not np.array_equal(fog, image)
    assert np.array_equal(degrade(image, "robustseg", "fog"), fog)
    mild, strong = (degrade(image, "imagenet-c", "gaussian_noise", s) for s in (1, 5))
    assert np.abs(mild.astype(int) - image).mean() < np.abs(strong.astype(int) - image).mean()
    assert severity_range("imagenet-c", "fog") == (1, 5, 3) or severity_range("imagenet-c", "fog")[:2] == (
        1,
        5,
    )
    assert severity_range("robustseg", "fog")[:2] == (1, 1)
    with pytest.raises(DataError, match="unknown degradation"):
        degrade(image, "robustseg", "hail")


def test_clicks_build_points_and_boxes(image) -> None:
    empty = PageState()
    assert add_click(empty, 1, 1, POSITIVE) == (empty, "Upload an image or pick a sample first.")
    state = PageState(original=image, image=image)
    state, _ = add_click(state, 10, 20, POSITIVE)
    state, _ = add_click(state, 30, 40, NEGATIVE)
    assert state.points == [(10, 20), (30, 40)] and state.labels == [1, 0]
    state, message = add_click(state, 100, 70, BOX)
    assert state.corner == (100, 70) and state.box is None and "opposite corner" in message
    state, message = add_click(state, 20, 10, BOX)
    assert state.box == (20, 10, 100, 70) and state.corner is None and message == ""
    state, _ = add_click(state, 5, 5, BOX)
    state, message = add_click(state, 5, 50, BOX)
    assert "zero area" in message and state.box == (20, 10, 100, 70) and state.corner is None
    assert state.prompt() == UserPrompt(points=((10, 20), (30, 40)), labels=(1, 0), box=(20, 10, 100, 70))
    assert state.cleared().prompt() is None and state.cleared().image is image


def test_uploads_are_checked(tmp_path, monkeypatch) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(DataError, match="notes.png: not an image file"):
        load_upload(text)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (4097, 2)).save(wide)
    with pytest.raises(DataError, match="4097x2 is larger than the 4096 px limit"):
        load_upload(wide)
    bomb = tmp_path / "bomb.png"  # 400 Mpixel, 50 kB: refused from its header, never decoded
    Image.new("1", (20000, 20000)).save(bomb)
    with pytest.raises(DataError, match="bomb.png: larger than the 4096 px limit"):
        load_upload(bomb)
    big = tmp_path / "big.png"
    Image.new("RGB", (2000, 1500), (10, 200, 30)).save(big)
    loaded = load_upload(big)
    assert loaded.shape == (768, 1024, 3) and tuple(loaded[100, 100]) == (10, 200, 30)
    monkeypatch.setattr(web, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(DataError, match="upload limit"):
        load_upload(big)
    small = np.zeros((20, 30, 3), dtype=np.uint8)
    assert fit_working_size(small) is small


def test_bundled_samples() -> None:
    names = sample_names()
    assert names, "garasam/assets/samples/ holds the page's samples (scripts/make_samples.py)"
    for name in names:
        picture = load_sample(name)
        assert picture.ndim == 3 and max(picture.shape[:2]) <= 512
    with pytest.raises(DataError, match="unknown sample"):
        load_sample("../../secrets.png")


def test_rank_chart_and_render(app, image) -> None:
    state = PageState(original=image, image=image)
    blank = render(app, state)
    assert blank[1].shape == image.shape and blank[2] is None and "Click" in blank[7]
    state, _ = add_click(state, 60, 45, POSITIVE)
    (_, canvas, frozen, frozen_score, gara, gara_score, chart, message) = render(app, state)
    assert canvas.shape == frozen.shape == gara.shape == image.shape
    assert "SAM (frozen)" in frozen_score and "predicted IoU" in frozen_score
    assert "GaRA-SAM" in gara_score and message == ""
    assert chart.ndim == 3 and chart.shape[2] == 3 and chart.dtype == np.uint8
    empty_chart = rank_chart(None)
    assert empty_chart.shape == chart.shape and not np.array_equal(empty_chart, chart)


def test_page_builds_and_reports_errors(app, tmp_path) -> None:
    pytest.importorskip("gradio")
    page = web.build_page(app)
    assert page is not None
    handler = web._guarded(app, lambda state: (_ for _ in ()).throw(DataError("broken.png: not an image")))
    result = handler(PageState())
    assert result[-1] == "**Error:** broken.png: not an image"
    # a stored prompt that no longer fits the image is dropped rather than failing again
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    stale = PageState(original=image, image=image, points=[(100.0, 5.0)], labels=[1])
    result = web._guarded(app, lambda state: render(app, state))(stale)
    assert result[0].prompt() is None and "outside the 30x20 image" in result[-1]


def test_a_truncated_upload_names_the_file_not_the_server_path(tmp_path) -> None:
    """Issue 13, case 7: the header reads, the pixels do not; PIL's error names the temporary path."""
    folder = tmp_path / "gradio" / "0123abcd"
    folder.mkdir(parents=True)
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole, "PNG")
    cut = folder / "cut.png"
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(DataError) as caught:
        load_upload(cut)
    assert "cut.png" in str(caught.value) and str(folder) not in str(caught.value)


@pytest.mark.parametrize(
    "error, shown",
    [
        (DataError("/tmp/gradio/0a1b/x.png: cannot read image"), "**Error:** x.png: cannot read image"),
        (DataError(r"C:\Users\me\AppData\up.png: bad"), "**Error:** up.png: bad"),
        (RuntimeError("/srv/garasam/secret.bin exploded"), "the server could not process this request"),
    ],
)
def test_no_server_path_reaches_the_page(app, error, shown, caplog) -> None:
    pytest.importorskip("gradio")
    handler = web._guarded(app, lambda state: (_ for _ in ()).throw(error))
    with caplog.at_level("WARNING", logger=web.__name__):
        message = handler(PageState())[-1]
    assert shown in message
    for secret in ("/tmp/gradio", "AppData", "/srv/garasam"):
        assert secret not in message
    assert str(error) in caplog.text  # the full message stays in the server's log


def test_the_page_refuses_a_real_model_without_weights() -> None:
    with pytest.raises(ConfigError, match="model type vit_b needs its weights"):
        WebApp.create(model_type="vit_b", device="cpu")


@pytest.mark.parametrize(
    "text, shown",
    [
        ("/tmp/gradio/0a1b/x.png: cannot read image", "x.png: cannot read image"),
        (r"C:\Users\me\up.png: bad", "up.png: bad"),
        ("runs/gara/adapters: not an adapter folder", "runs/gara/adapters: not an adapter folder"),
        ("1/2 of the images", "1/2 of the images"),
    ],
)
def test_public_messages_cut_absolute_paths_only(text, shown) -> None:
    assert web.public_message(text) == shown


def test_the_page_notes_name_no_server_path(tmp_path) -> None:
    """Issue 29, item 12: the first note showed .../site-packages/garasam/assets/tiny_gara."""
    from garasam.adapters import GaRAConfig, inject_adapters
    from garasam.models import build_sam

    folder = tmp_path / "deep" / "my_gara"
    inject_adapters(build_sam("tiny"), GaRAConfig(r_low=2, r_high=4)).save_pretrained(folder)
    for adapters, shown in ((None, "bundled demo adapters"), (folder, "my_gara")):
        notes = " ".join(WebApp.create(adapters=adapters, device="cpu").notes)
        assert shown in notes and str(tmp_path) not in notes and "/garasam/assets" not in notes, notes


# -- a long-running server (issue 29, item 7) ----------------------------------------------------------
def test_the_sweeper_deletes_expired_files_only(tmp_path) -> None:
    import os

    sweeper = web.Sweeper(tmp_path, web.ServerLimits(file_ttl_s=60))
    (tmp_path / "upload" / "abc").mkdir(parents=True)
    old, new = tmp_path / "upload" / "abc" / "old.png", tmp_path / "answer.png"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (1_000, 1_000))
    assert sweeper.sweep() == 1
    assert not old.exists() and new.exists()
    assert sweeper.sweep(now=new.stat().st_mtime + 61) == 1 and not new.exists()


def test_the_page_keeps_a_sessions_image_for_the_ttl_only(app) -> None:
    page = web.build_page(app, web.ServerLimits(session_ttl_s=5))
    states = [block for block in page.blocks.values() if type(block).__name__ == "State"]
    assert [state.time_to_live for state in states] == [5]


@pytest.fixture
def busy_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_refuses_a_busy_port_before_the_model_loads(busy_port, monkeypatch, capsys) -> None:
    from garasam.cli import main

    monkeypatch.setattr(WebApp, "create", lambda *a, **k: pytest.fail("the model loaded"))
    assert main(["serve", "--port", str(busy_port)]) == 2
    printed = capsys.readouterr()
    assert f"cannot serve on 127.0.0.1:{busy_port}: Address already in use" in printed.err
    assert "http://" not in printed.out  # no URL as if it were serving


def test_serve_refuses_an_unknown_host(monkeypatch, capsys) -> None:
    from garasam.cli import main

    monkeypatch.setattr(WebApp, "create", lambda *a, **k: pytest.fail("the model loaded"))
    assert main(["serve", "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid: not an address of this machine" in capsys.readouterr().err
