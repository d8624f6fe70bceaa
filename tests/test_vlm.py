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
