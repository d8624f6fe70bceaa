"""The vision-language backend of the grounding node: a Qwen-family model from a local folder.

Users bring their own weights (HMR-1's Qwen-VL fine-tune, a Qwen2-VL or a Qwen2.5-VL one);
nothing is ever downloaded. torch and transformers come with the ``vlm`` extra
(``pip install -e '.[vlm]'``) and are imported only when a model is loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FAMILIES = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "qwen": "qwen-vl"}
DEFAULT_PROMPT = ("Where is the acupoint {pinyin} ({code}) in this image? Answer with its "
                  "bounding box.")


class ModelFolderError(RuntimeError):
    """The model folder cannot be used; the message names what is missing and the fix."""


def family_of(config: dict[str, Any]) -> str:
    """qwen-vl | qwen2-vl | qwen2.5-vl from a checkpoint's config.json."""
    model_type = str(config.get("model_type", ""))
    if model_type not in FAMILIES:
        raise ModelFolderError(f"config.json has model_type {model_type!r}; tuina runs "
                               f"{', '.join(sorted(FAMILIES))} checkpoints")
    return FAMILIES[model_type]


def folder_problem(path: Path) -> str:
    """What a checkpoint folder lacks to be loaded (empty: nothing)."""
    how = ("copy the whole checkpoint there (e.g. `huggingface-cli download "
           "Qwen/Qwen2-VL-2B-Instruct --local-dir DIR` on a machine with internet) and set "
           "MODEL_PATH to it")
    if not str(path) or not path.is_dir():
        return f"MODEL_PATH {str(path)!r} is not a folder; {how}"
    files = {p.name for p in path.iterdir()}
    missing = []
    if "config.json" not in files:
        missing.append("config.json")
    index = next((n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
                  if n in files), None)
    if index is not None:
        shards = set(json.loads((path / index).read_text()).get("weight_map", {}).values())
        missing += sorted(s for s in shards if s not in files)
    elif not any(n.endswith(".safetensors") or (n.startswith("pytorch_model") and
                                                 n.endswith(".bin")) for n in files):
        missing.append("the weights (*.safetensors or pytorch_model*.bin)")
    if not ({"tokenizer.json", "qwen.tiktoken"} & files or {"vocab.json", "merges.txt"} <= files):
        missing.append("the tokenizer (tokenizer.json, or vocab.json + merges.txt, or "
                       "qwen.tiktoken)")
    if "config.json" in files:
        try:
            family = family_of(json.loads((path / "config.json").read_text()))
        except (json.JSONDecodeError, ModelFolderError) as err:
            return f"MODEL_PATH {path}: {err}"
        if family != "qwen-vl" and "preprocessor_config.json" not in files:
            missing.append("preprocessor_config.json")
    if missing:
        return f"MODEL_PATH {path} lacks {', '.join(missing)}; {how}"
    return ""


@dataclass
class Answer:
    """One model answer: its text, the size of the image the model saw, how long it took."""

    text: str
    input_wh: tuple[int, int]
    seconds: float


class VLMGrounder:
    """A Qwen-family vision-language model, loaded on first use from a local folder."""

    def __init__(self, model_path: str | Path, device: str = "auto", prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 48, dtype: str = "auto"):
        self.path = Path(model_path)
        self.device_name = device
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.dtype_name = dtype
        self.model: Any = None
        self.processor: Any = None
        self.family = ""

    def check(self) -> None:
        """Raise ModelFolderError if the folder cannot be loaded (cheap: no model is read)."""
        problem = folder_problem(self.path)
        if problem:
            raise ModelFolderError(problem)

    def load(self) -> None:
        """Read the processor and the weights (offline), on CUDA when present."""
        if self.model is not None:
            return
        self.check()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers

        self.family = family_of(json.loads((self.path / "config.json").read_text()))
        if self.device_name == "auto":
            self.device_name = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"auto": torch.bfloat16 if self.device_name.startswith("cuda") else torch.float32,
                 "bfloat16": torch.bfloat16, "float16": torch.float16,
                 "float32": torch.float32}[self.dtype_name]
        if self.family == "qwen-vl":  # the original Qwen-VL ships its own modelling code
            self.processor = transformers.AutoTokenizer.from_pretrained(
                self.path, trust_remote_code=True, local_files_only=True)
            model_class = transformers.AutoModelForCausalLM
            extra = {"trust_remote_code": True}
        else:
            self.processor = load_processor(self.path)
            model_class = (transformers.Qwen2VLForConditionalGeneration
                           if self.family == "qwen2-vl"
                           else transformers.Qwen2_5_VLForConditionalGeneration)
            extra = {}
        self.model = model_class.from_pretrained(self.path, dtype=dtype, local_files_only=True,
                                                 **extra).to(self.device_name).eval()

    def question(self, pinyin: str, code: str) -> str:
        """The prompt for one acupoint."""
        return self.prompt.format(pinyin=pinyin, code=code)

    def ask(self, image_rgb: np.ndarray, question: str) -> Answer:
        """Ask about one HxWx3 uint8 RGB image; greedy decoding, special tokens kept."""
        self.load()
        import torch

        start = time.perf_counter()
        h, w = image_rgb.shape[:2]
        if self.family == "qwen-vl":
            text = self._ask_qwen_vl(image_rgb, question)
            return Answer(text, (w, h), time.perf_counter() - start)
        from PIL import Image

        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": question}]}]
        prompt = self.processor.apply_chat_template(messages, tokenize=False,
                                                    add_generation_prompt=True)
        inputs = self.processor(text=[prompt], images=[Image.fromarray(image_rgb)],
                                return_tensors="pt")
        inputs = {k: v.to(self.device_name) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                      do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        text = self.processor.tokenizer.decode(new, skip_special_tokens=False)
        for end in ("<|im_end|>", "<|endoftext|>"):
            text = text.split(end)[0]
        patch = self.processor.image_processor.patch_size
        _, grid_h, grid_w = (int(v) for v in inputs["image_grid_thw"][0])
        return Answer(text, (grid_w * patch, grid_h * patch), time.perf_counter() - start)

    def _ask_qwen_vl(self, image_rgb: np.ndarray, question: str) -> str:
        """Qwen-VL's own chat API takes the image as a file path."""
        from PIL import Image

        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            Image.fromarray(image_rgb).save(f.name)
            query = self.processor.from_list_format([{"image": f.name}, {"text": question}])
            text, _ = self.model.chat(self.processor, query=query, history=None)
        return text


@dataclass
class Request:
    """One question about one camera frame; ``context`` comes back with the answer."""

    stamp_ns: int
    image: np.ndarray
    question: str
    context: Any = None


@dataclass
class Result:
    """A finished request: the answer, or why there is none."""

    request: Request
    answer: Answer | None
    error: str = ""


class VLMWorker:
    """Runs a VLMGrounder on its own thread, so the node's event loop never waits on it.

    ``submit`` returns at once; a request not yet started is replaced by a newer one (only
    the latest question counts). ``poll`` hands back what has finished. torch releases the
    GIL while it computes, so the loop keeps taking its inputs meanwhile.
    """

    def __init__(self, grounder: VLMGrounder):
        import threading

        self.grounder = grounder
        self._lock = threading.Condition()
        self._next: Request | None = None
        self._done: list[Result] = []
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="vlm", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
        """Ask; replaces a request still waiting to start."""
        with self._lock:
            self._next = request
            self._lock.notify()

    def poll(self) -> list[Result]:
        """Finished requests, oldest first."""
        with self._lock:
            done, self._done = self._done, []
        return done

    @property
    def busy(self) -> bool:
        """A request is waiting or being answered."""
        with self._lock:
            return self._busy or self._next is not None

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._next is None:
                    self._lock.wait()
                request, self._next, self._busy = self._next, None, True
            try:
                result = Result(request, self.grounder.ask(request.image, request.question))
            except Exception as err:  # a model failure is reported, never raised in the loop
                result = Result(request, None, f"{type(err).__name__}: {err}")
            with self._lock:
                self._done.append(result)
                self._busy = False


class ImageTextProcessor:
    """Qwen2-VL's processor for images and text only, from its parts: the image processor,
    the tokenizer and the chat template. transformers builds the whole processor only with
    a video processor, which needs torchvision; this does what its ``__call__`` does for
    images: one ``<|image_pad|>`` per merged patch, then tokenise."""

    image_token = "<|image_pad|>"

    def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.chat_template = chat_template

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> str:
        """The prompt text of a conversation."""
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template,
                                                  **kwargs)

    def __call__(self, text: list[str], images: list[Any], return_tensors: str = "pt"
                 ) -> dict[str, Any]:
        vision = self.image_processor(images=images, return_tensors=return_tensors)
        merge = self.image_processor.merge_size ** 2
        expanded = []
        grids = iter(vision["image_grid_thw"])
        for prompt in text:
            parts = prompt.split(self.image_token)
            out = parts[0]
            for part in parts[1:]:
                out += self.image_token * (int(next(grids).prod()) // merge) + part
            expanded.append(out)
        encoded = self.tokenizer(expanded, return_tensors=return_tensors)
        return {**encoded, **vision}


def load_processor(path: Path) -> Any:
    """The checkpoint's processor (offline); without torchvision, its image and text parts."""
    import transformers

    try:
        return transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    except ImportError:
        template_file = path / "chat_template.jinja"
        if template_file.is_file():
            template = template_file.read_text()
        else:
            template = json.loads((path / "chat_template.json").read_text())["chat_template"]
        return ImageTextProcessor(
            transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True),
            transformers.AutoTokenizer.from_pretrained(path, local_files_only=True), template)
