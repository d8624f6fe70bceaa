"""Fixtures the tests and benchmarks build with the real libraries, no hardware and no
downloads: a randomly initialised vision-language checkpoint with a real processor, and
RealSense recordings (.db3) written by pyrealsense2's own recorder from a software device."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tuina.vlm import DEFAULT_PROMPT

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|object_ref_start|>",
                  "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_random_checkpoint(folder: Path, family: str = "qwen2-vl", size: str = "tiny",
                            seed: int = 0) -> Path:
    """A randomly initialised checkpoint folder with a real processor, for tests and
    benchmarks (its answers are noise). ``size``: tiny (a few MB, CPU) or 2b (Qwen2-VL-2B's
    shapes, about 4.4 GB in bf16)."""
    import torch
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    corpus = [DEFAULT_PROMPT, "<ref>Zusanli</ref><box>(123,456),(789,999)</box>",
              '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "ST36"}]\n```',
              "system user assistant You are a helpful assistant. 0123456789 ,.()[]{}:"]
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1,
                            special_tokens=SPECIAL_TOKENS)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    image_processor = transformers.Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=(224 * 224 if size == "tiny" else 1280 * 28 * 28))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if size == "tiny":
        text = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "num_key_value_heads": 1, "intermediate_size": 64,
                "vocab_size": len(tokenizer), "rope_scaling": {"type": "mrope",
                                                               "mrope_section": [2, 3, 3]}}
        vision = {"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2,
                  "intermediate_size": 64, "out_hidden_size": 32}
    elif size == "2b":  # Qwen2-VL-2B-Instruct's shapes
        text = {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936,
                "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}}
        vision = {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16,
                  "intermediate_size": 5120, "out_hidden_size": 1536}
    else:
        raise ValueError(f"size {size!r}: tiny or 2b")
    vision.update({"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2})
    tokens = {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"],
              "vision_end_token_id": ids["<|vision_end|>"]}
    text.update({"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                 "bos_token_id": ids["<|endoftext|>"]})
    tokens["tie_word_embeddings"] = size == "2b"  # as Qwen2-VL-2B ties them
    if family == "qwen2-vl":
        config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
        model_class = transformers.Qwen2VLForConditionalGeneration
    elif family == "qwen2.5-vl":
        vision.update({"fullatt_block_indexes": [0] if size == "tiny" else [7, 15, 23, 31],
                       "window_size": 112})
        config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                                               **tokens)
        model_class = transformers.Qwen2_5_VLForConditionalGeneration
    else:
        raise ValueError(f"family {family!r}: qwen2-vl or qwen2.5-vl")
    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    # the parts of a processor, as a checkpoint ships them (built as a whole, the processor
    # would want a video processor, which needs torchvision)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return folder


def write_db3(path, frames: Iterable[tuple[np.ndarray, np.ndarray]], fx: float, fy: float,
              cx: float, cy: float, coeffs: list[float], fps: int, depth_units: float = 0.001,
              start_ms: float = 1000.0) -> int:
    """Record (z16 depth, rgb8 colour) pairs with pyrealsense2's own recorder; returns the
    number of frames. Both streams share the intrinsics (depth already aligned)."""
    import pyrealsense2 as rs

    frames = iter(frames)
    depth0, color0 = next(frames)
    h, w = depth0.shape
    device = rs.software_device()
    device.register_info(rs.camera_info.name, "Intel RealSense D455")
    device.register_info(rs.camera_info.serial_number, "012345678901")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = w, h, cx, cy, fx, fy
    intr.model, intr.coeffs = rs.distortion.brown_conrady, list(coeffs)
    sensors, profiles = [], []
    for name, kind, fmt, bpp, uid in (("Stereo Module", rs.stream.depth, rs.format.z16, 2, 0),
                                      ("RGB Camera", rs.stream.color, rs.format.rgb8, 3, 1)):
        sensor = device.add_sensor(name)
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid, stream.fmt, stream.bpp = kind, 0, uid, fmt, bpp
        stream.width, stream.height, stream.fps, stream.intrinsics = w, h, fps, intr
        profiles.append(sensor.add_video_stream(stream))
        sensors.append(sensor)
    identity = rs.extrinsics()
    identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles[0].register_extrinsics_to(profiles[1], identity)  # depth is already aligned
    sensors[0].add_read_only_option(rs.option.depth_units, depth_units)
    recorder = rs.recorder(str(path), device)
    for sensor, profile in zip(sensors, profiles, strict=True):
        sensor.open(profile)
        sensor.start(lambda frame: None)
    time.sleep(0.5)  # the recorder opens its streams on its own thread: frames before are lost
    count = 0
    for k, (depth, color) in enumerate([(depth0, color0), *frames]):
        for sensor, profile, image, bpp in ((sensors[0], profiles[0], depth, 2),
                                            (sensors[1], profiles[1], color, 3)):
            frame = rs.software_video_frame()
            frame.pixels, frame.stride, frame.bpp = np.ascontiguousarray(image), w * bpp, bpp
            frame.timestamp, frame.frame_number = start_ms + k * 1000.0 / fps, k
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.profile = profile.as_video_stream_profile()
            if bpp == 2:
                frame.depth_units = depth_units
            sensor.on_video_frame(frame)
        count += 1
        time.sleep(0.002)
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del recorder  # closes the file
    return count


def niced_chromium(playwright: Any, executable: str, nice: int = 10) -> Any:
    """Headless chromium launched through Playwright at ``nice``, every process of it (its
    renderers fork from a zygote started before any renice could reach them, so the
    executable is wrapped): a person's browser runs on a tablet or a laptop, not beside the
    control loop, and on one machine it must not starve the simulated arm's server."""
    import shutil
    import tempfile

    wrapper = Path(tempfile.mkdtemp(prefix="tuina-chromium-")) / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {nice} {shutil.which(executable) or executable}'
                       ' "$@"\n')
    wrapper.chmod(0o755)
    return playwright.chromium.launch(executable_path=str(wrapper), headless=True,
                                      args=["--no-sandbox"])
