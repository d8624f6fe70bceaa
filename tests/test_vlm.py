"""Vision-language grounding: answer parsing, the model backend on tiny random models,
the grounding evaluator and the augmentation."""

import pytest
from tuina.operators.phantom import ATLAS
from tuina.operators.vlm import AnswerBox, box_iou, choose_box, read_boxes

ST36 = next(a for a in ATLAS if a.code == "ST36")
IMAGE = (640, 480)


def test_qwen_vl_boxes_are_read_from_thousandths_of_the_image():
    boxes = read_boxes("<ref>Zusanli</ref><box>(500,250),(600,500)</box>", IMAGE)
    assert boxes == [AnswerBox("Zusanli", (320.0, 120.0, 384.0, 240.0))]


def test_qwen2_vl_special_token_boxes_are_read():
    answer = ("<|object_ref_start|>ST36<|object_ref_end|><|box_start|>(100,200),(150,260)"
              "<|box_end|><|im_end|>")
    assert read_boxes(answer, IMAGE) == [AnswerBox("ST36", (64.0, 96.0, 96.0, 124.8))]


def test_qwen2_5_vl_json_boxes_are_rescaled_from_the_model_input():
    answer = 'Here:\n```json\n[\n  {"bbox_2d": [280, 140, 336, 196], "label": "Zusanli"}\n]\n```'
    # the model saw the 640x480 image resized to 560x420
    boxes = read_boxes(answer, IMAGE, input_wh=(560, 420))
    assert boxes == [AnswerBox("Zusanli", (320.0, 160.0, 384.0, 224.0))]
    assert read_boxes('{"bbox_2d": [1, 2, 3, 4]}', IMAGE) == [AnswerBox("", (1, 2, 3, 4))]


@pytest.mark.parametrize("answer", [
    "", "I cannot see an acupoint.", "<ref>Zusanli</ref><box>(500,250)</box>",
    '```json\n[{"bbox_2d": [1, 2, 3]}]\n```', '{"bbox_2d": "1,2,3,4"}', "[{'bbox_2d': [1,2,3,4]}",
    '[{"bbox_2d": [true, 2, 3, 4]}]',
])
def test_malformed_answers_hold_no_box(answer):
    assert read_boxes(answer, IMAGE) == []
    result = choose_box(read_boxes(answer, IMAGE), ST36, IMAGE)
    assert result.box is None and result.reason == "no box in the answer"


def test_one_box_for_the_asked_point_grounds_it():
    result = choose_box([AnswerBox("Zusanli", (300, 100, 340, 150))], ST36, IMAGE)
    assert result.box == AnswerBox("Zusanli", (300, 100, 340, 150)) and result.reason == ""
    unlabelled = choose_box([AnswerBox("", (300, 100, 340, 150))], ST36, IMAGE)
    assert unlabelled.box is not None


def test_swapped_corners_are_ordered_and_a_box_past_the_edge_is_cut():
    result = choose_box([AnswerBox("ST36", (340, 150, 300, 100))], ST36, IMAGE)
    assert result.box.box == (300, 100, 340, 150)
    cut = choose_box([AnswerBox("ST36", (620, 460, 700, 520))], ST36, IMAGE)
    assert cut.box.box == (620, 460, 640, 480)


def test_unusable_boxes_leave_the_point_not_grounded_with_the_reason():
    outside = choose_box([AnswerBox("ST36", (700, 10, 800, 40))], ST36, IMAGE)
    assert outside.box is None and "outside the 640x480 image" in outside.reason
    other = choose_box([AnswerBox("Tianshu", (10, 10, 40, 40))], ST36, IMAGE)
    assert other.box is None and other.reason == "the answer grounds ST25, not ST36"
    several = choose_box([AnswerBox("ST36", (10, 10, 40, 40)), AnswerBox("", (90, 90, 99, 99))],
                         ST36, IMAGE)
    assert several.box is None and several.reason == "2 boxes for ST36; expected one"
    # a box for another point beside the asked one: the asked one is taken
    mixed = choose_box([AnswerBox("ST25", (10, 10, 40, 40)), AnswerBox("ST36", (90, 90, 99, 99))],
                       ST36, IMAGE)
    assert mixed.box.label == "ST36"


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


# --- the grounding node with BACKEND vlm -------------------------------------------------

class SlowGrounder:
    """A stand-in for the model: a canned answer after ``seconds``."""

    answer = "<ref>Zusanli</ref><box>(500,500),(550,560)</box>"
    seconds = 0.3

    def __init__(self, *args, **kwargs):
        self.asked: list[float] = []

    def check(self) -> None:
        pass

    def question(self, pinyin: str, code: str) -> str:
        return f"Where is {pinyin}?"

    def ask(self, image, question):
        import time

        from tuina.vlm import Answer

        self.asked.append(time.monotonic())
        time.sleep(self.seconds)
        return Answer(self.answer, (image.shape[1], image.shape[0]), self.seconds)


def rgb_event(stamp: int) -> dict:
    import numpy as np

    from tuina.messages import Header, encode_rgb

    array, md = encode_rgb(np.zeros((480, 640, 3), np.uint8), Header(stamp, 0, "camera"))
    return {"type": "INPUT", "id": "rgb", "value": array, "metadata": md}


class PacedNode:
    """dora.testing.MockNode's events, one every ``period`` seconds of wall time, with the
    wall time each was handed out."""

    def __init__(self, events: list[dict], period: float):
        from dora.testing import MockNode

        self.mock = MockNode(events)
        self.period = period
        self.handed: list[float] = []

    def __iter__(self):
        return self

    def __next__(self):
        import time

        time.sleep(self.period)
        event = self.mock.next()
        if event is None:
            raise StopIteration
        self.handed.append(time.monotonic())
        return event

    def next(self, timeout=None):
        return next(self, None)

    def __getattr__(self, name):
        return getattr(self.mock, name)


def run_vlm_node(monkeypatch, events, period=0.02, **env):
    import dora
    from tuina.nodes import grounding

    monkeypatch.setenv("BACKEND", "vlm")
    monkeypatch.setenv("MODEL_PATH", "/unused")
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    node = PacedNode(events, period)
    monkeypatch.setattr(dora, "Node", lambda *a, **k: node)
    monkeypatch.setattr(grounding, "VLMGrounder", SlowGrounder)
    grounding.main()
    return node


def instruction_event(stamp: int) -> dict:
    from tuina.messages import Header, Instruction

    return {"type": "INPUT", "id": "instruction",
            "value": Instruction("press Zusanli with moderate pressure").to_arrow(),
            "metadata": Header(stamp, 0, "camera").to_metadata()}


def test_the_node_keeps_taking_frames_while_the_model_thinks(monkeypatch):
    from tuina.messages import decode_targets

    monkeypatch.setattr(SlowGrounder, "seconds", 1.0)
    frames = [rgb_event(int(1e9 + k * 50e6)) for k in range(80)]  # 20 Hz camera time
    node = run_vlm_node(monkeypatch, [instruction_event(int(0.9e9)), *frames],
                        MAX_ANSWER_AGE_S=10.0)
    targets = [t for value in node.mock.outputs.get("targets", []) for t in decode_targets(value)]
    assert len(targets) == 1
    target = targets[0]
    assert target.code == "ST36" and target.force_n == 6.0
    assert target.box == pytest.approx([320, 240, 352, 268.8])  # thousandths -> pixels
    assert target.center_px == pytest.approx([336, 254.4])
    assert target.source_stamp_ns == int(1e9)  # the frame it was asked about
    # while the 1 s answer was computed, the loop went on at its 20 ms pace
    gaps = [b - a for a, b in zip(node.handed, node.handed[1:], strict=False)]
    assert max(gaps) < 0.5


def test_a_stale_answer_is_dropped_and_the_question_asked_again(monkeypatch):
    from tuina.messages import decode_targets

    # camera time runs 10x faster than the wall clock: a 0.3 s answer is 3 s late
    frames = [rgb_event(int(1e9 + k * 500e6)) for k in range(30)]
    node = run_vlm_node(monkeypatch, [instruction_event(int(0.9e9)), *frames], period=0.05,
                        MAX_ANSWER_AGE_S=1.0, MAX_STALE_ANSWERS=2)
    assert "targets" not in node.mock.outputs  # never a target from a stale answer
    from tuina.messages import SessionEvent

    errors = [SessionEvent.from_arrow(v).detail for v in node.mock.outputs["events"]]
    assert len(errors) == 1 and "2 answers in a row came too late" in errors[0]
    assert not [t for v in node.mock.outputs.get("targets", []) for t in decode_targets(v)]


def test_an_unusable_answer_grounds_nothing_and_logs_it(monkeypatch, capfd):
    from tuina.messages import SessionEvent

    monkeypatch.setattr(SlowGrounder, "answer", "<ref>Tianshu</ref><box>(1,1),(20,20)</box>")
    monkeypatch.setattr(SlowGrounder, "seconds", 0.05)
    frames = [rgb_event(int(1e9 + k * 50e6)) for k in range(20)]
    node = run_vlm_node(monkeypatch, [instruction_event(int(0.9e9)), *frames])
    assert "targets" not in node.mock.outputs
    detail = SessionEvent.from_arrow(node.mock.outputs["events"][0]).detail
    assert "ST36 not grounded (the answer grounds ST25, not ST36)" in detail
    assert "<ref>Tianshu</ref>" in detail  # the raw answer, logged
    assert "tuina-grounding: error:" in capfd.readouterr().err


def test_a_missing_model_folder_is_one_line_naming_what_is_missing(tmp_path, monkeypatch,
                                                                   capfd):
    import json

    from tuina.nodes import grounding

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    monkeypatch.setenv("BACKEND", "vlm")
    monkeypatch.setenv("MODEL_PATH", str(folder))
    with pytest.raises(SystemExit) as exit_info:
        grounding.main()
    assert exit_info.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "lacks the weights" in err and "preprocessor_config.json" in err
    assert "the tokenizer" in err and "huggingface-cli download" in err


# --- tiny random models through the real processor and generate path ----------------------

@pytest.fixture(scope="module", params=["qwen2-vl", "qwen2.5-vl"])
def tiny_checkpoint(request, tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tuina.testing import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp(request.param), request.param)


def test_a_tiny_model_answers_through_the_real_processor_and_generate(tiny_checkpoint):
    import numpy as np

    from tuina.vlm import VLMGrounder, folder_problem

    assert folder_problem(tiny_checkpoint) == ""
    grounder = VLMGrounder(tiny_checkpoint, device="cpu", max_new_tokens=12)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    answer = grounder.ask(image, grounder.question("Zusanli", "ST36"))
    again = grounder.ask(image, grounder.question("Zusanli", "ST36"))
    assert isinstance(answer.text, str) and answer.text == again.text  # greedy: repeatable
    w, h = answer.input_wh  # the resized model input: whole merged patches, aspect kept
    assert w % 28 == 0 and h % 28 == 0 and abs(w / h - 640 / 480) < 0.2
    assert grounder.family in ("qwen2-vl", "qwen2.5-vl")
    # its answer is noise: nothing the robot could move on
    result = choose_box(read_boxes(answer.text, (640, 480), answer.input_wh), ST36, IMAGE)
    assert result.box is None


def test_the_node_runs_a_tiny_model_and_moves_nothing_on_its_noise(tiny_checkpoint, monkeypatch):
    import dora
    from tuina.nodes import grounding

    from tuina.messages import SessionEvent

    monkeypatch.setenv("BACKEND", "vlm")
    monkeypatch.setenv("MODEL_PATH", str(tiny_checkpoint))
    monkeypatch.setenv("MAX_NEW_TOKENS", "8")
    frames = [rgb_event(int(1e9 + k * 50e6)) for k in range(150)]
    node = PacedNode([instruction_event(int(0.9e9)), *frames], 0.02)
    monkeypatch.setattr(dora, "Node", lambda *a, **k: node)
    grounding.main()
    assert "targets" not in node.mock.outputs
    details = [SessionEvent.from_arrow(v).detail for v in node.mock.outputs["events"]]
    assert details and "ST36 not grounded" in details[0]


# --- the evaluator and the augmentation -------------------------------------------------

def constructed_dataset(tmp_path):
    """Ten questions on 1000x1000 images (thousandths are pixels): the predictions below
    overlap their labels by IoU 1 (4), 0.6 (3), 0.4 (2) and nothing (1)."""
    import numpy as np

    from tuina.evaluation.grounding import Question, Sample, write_dataset

    points = [a for a in ATLAS][:5]
    samples = []
    for k in range(5):
        questions = [Question(f"Where is {points[(k + j) % 5].pinyin}?", points[(k + j) % 5],
                              (100.0 + 10 * k, 100.0 + 10 * j, 200.0 + 10 * k, 200.0 + 10 * j))
                     for j in range(2)]
        samples.append(Sample(np.full((1000, 1000, 3), 40 * k, np.uint8), questions))
    return write_dataset(samples, tmp_path / "constructed")


def test_the_evaluator_reproduces_a_success_rate_known_by_construction(tmp_path):
    from tuina.evaluation.grounding import evaluate, read_dataset

    samples = read_dataset(constructed_dataset(tmp_path))
    shifts = iter([0, 0, 0, 0, 25, 25, 25, 300 / 7, 300 / 7, None])  # IoU 1, 0.6, 0.4, none

    def predict(sample, question):
        dx = next(shifts)
        if dx is None:
            return None
        x1, y1, x2, y2 = question.box
        return (x1 + dx, y1, x2 + dx, y2)

    result = evaluate(samples, predict)
    assert result["n"] == 10
    assert result["success_iou30"] == 0.9
    assert result["success_iou50"] == 0.7
    assert result["success_iou75"] == 0.4
    per = result["per_acupoint_iou50"]
    assert sum(v["n"] for v in per.values()) == 10 and set(per) == {a.code for a in ATLAS[:5]}
    assert result["not_grounded"] == 1
    assert result["centre_error_px_mean"] == pytest.approx((3 * 25 + 2 * 300 / 7) / 9)


def test_sim_labels_are_rendered_apart_from_the_atlas_predictor_that_is_scored_on_them():
    """The labels: the rendered skin within 15 mm of each visible point (true camera and
    depth); the predictor: registration on noisy depth with the reported intrinsics and a
    calibrated camera, its own model's patch projected. Seed 0, three images."""
    from tuina.evaluation.grounding import atlas_predictor, evaluate, render_sim

    samples = render_sim(3, seed=0, log=lambda line: None)
    assert sum(len(s.questions) for s in samples) >= 20
    result = evaluate(samples, atlas_predictor(0))
    # over 40 images (421 questions): 98 % at IoU 0.3, 89 % at 0.5, 68 % at 0.75
    assert result["not_grounded"] == 0 and result["success_iou30"] >= 0.9
    assert result["centre_error_px_mean"] <= 2.0
    assert result["success_iou75"] < 1.0  # the labels are not the predictor's own boxes


def test_a_dataset_with_a_broken_answer_names_the_record(tmp_path):
    import json

    from tuina.evaluation.grounding import DatasetError, read_dataset

    folder = constructed_dataset(tmp_path)
    records = json.loads((folder / "annotations.json").read_text())
    records[3]["conversations"][1]["value"] = "somewhere on the leg"
    (folder / "annotations.json").write_text(json.dumps(records))
    with pytest.raises(DatasetError, match=r"annotations.json record 3: .*one box"):
        read_dataset(folder)


def test_a_rotated_box_is_the_tight_box_of_its_turned_corners(tmp_path):
    import numpy as np

    from tuina.augment import augment, rotation, transform_box
    from tuina.evaluation.grounding import Question, Sample

    M, (w, h) = rotation(90.0, 200, 100)
    assert (w, h) == (100, 200)
    # a quarter turn counter-clockwise: x' = y, y' = (W - 1) - x
    assert transform_box((10, 20, 50, 40), M) == pytest.approx((20, 149, 40, 189))
    # the boxes follow the pixels: a white block stays inside its box after any turn and crop
    image = np.zeros((240, 320, 3), np.uint8)
    image[100:140, 150:210] = 255
    sample = Sample(image, [Question("Where is Zusanli?", ST36, (150, 100, 210, 140))])
    for new in augment([sample], copies=8, seed=3, max_rotation_deg=40, min_crop=0.8):
        ys, xs = np.nonzero(new.image[..., 0] > 128)
        if not len(xs):
            continue
        x1, y1, x2, y2 = new.questions[0].box
        assert x1 - 1.5 <= xs.min() and xs.max() <= x2 + 1.5
        assert y1 - 1.5 <= ys.min() and ys.max() <= y2 + 1.5
        # tight: the block's corners reach the box's sides (unless cut by the crop)
        assert min(xs.min() - x1, x2 - xs.max()) < 2.5 or new.extra["crop"]
    first = augment([sample], copies=3, seed=7)
    second = augment([sample], copies=3, seed=7)
    assert all(np.array_equal(a.image, b.image) and a.questions == b.questions
               for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0].image, augment([sample], copies=1, seed=8)[0].image)


def test_a_sim_label_is_the_rendered_skin_patch_not_a_projected_box():
    import numpy as np
    from tuina.operators.geometry import intrinsics_matrix

    from tuina.evaluation.grounding import patch_box

    K = intrinsics_matrix(600.0, 600.0, 320.0, 240.0)
    camera = np.eye(4)  # the camera's optical frame is the base frame
    v, u = np.mgrid[0:480, 0:640].astype(float)
    facing = np.full((480, 640), 0.5, np.float32)  # skin square to the camera, 0.5 m away
    # 15 mm at 0.5 m is 18 px: the patch's pixels reach 18 px each way from the centre
    assert patch_box(facing, K, camera, np.array([0.0, 0.0, 0.5]), 0.015) == pytest.approx(
        [301.5, 221.5, 338.5, 258.5], abs=1.0)
    # skin turned 60 deg about the image's vertical: the patch is half as wide, as tall
    slope = np.tan(np.radians(60.0))
    turned = (0.5 / (1.0 - slope * (u - 320.0) / 600.0)).astype(np.float32)
    x1, y1, x2, y2 = patch_box(turned, K, camera, np.array([0.0, 0.0, 0.5]), 0.015)
    assert 16 <= x2 - x1 <= 21 and y2 - y1 == pytest.approx(37.0, abs=1.0)
    # the arm in front of the point hides it: no label
    hidden = facing.copy()
    hidden[230:250, 310:330] = 0.3
    assert patch_box(hidden, K, camera, np.array([0.0, 0.0, 0.5]), 0.015) is None
    # a patch cut by the image's edge is no label either
    at_edge = np.array([(5.0 - 320.0) / 600.0 * 0.5, 0.0, 0.5])
    assert patch_box(facing, K, camera, at_edge, 0.015) is None
