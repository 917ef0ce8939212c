"""Real architectures at their library's default init, audited through every route gradaudit has.

Usage (from the repository root, with the `zoo` extra installed):
    python benchmarks/real_models.py                      # every model, every route
    python benchmarks/real_models.py --only hf_gpt2 --routes factory,onnx-legacy --json out.json

Each corpus entry is built from a small config of its library's own module code (torchvision,
timm, transformers, diffusers, torch.nn) with the library's default random initialisation, and
audited through three routes: the factory (`gradaudit check real_models.py:build_<name>`) and the
ONNX files of both exporters (`dynamo=True`, and the legacy TorchScript one with
`do_constant_folding=False`, which keeps BatchNorm). Every audit runs in its own subprocess with a
time limit, so one crash or hang costs one row. An export the exporter itself cannot produce is
recorded as "export failed", not as a gradaudit crash.

The broken variants (bad init scales, deep plain stacks, zero-init traps, saturated activations,
BN-deep plain stacks) carry `broken=True`; `benchmarks/train_labels.py` trains them and several
standard entries and stores whether each trains, stalls or diverges in
`benchmarks/train_labels.json`. The summary counts
- crashes: exit 3 (or exit 2: an input error on a valid model), a timeout, or a worker that died;
- false failures: a standard architecture whose gate fails (exit 1);
- false passes: a broken variant labelled as failing to train whose gate passes;
- route disagreements: routes of one model with different diagnoses, or static predictions more
  than ROUTE_AGREEMENT_DECADES apart;
- static MAE: mean |static - measured| first/last ratio over runs that have both, and the share
  within 0.5 decades.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
LABELS = HERE.parent / "train_labels.json"
sys.path.insert(0, str(ROOT))
ROUTES = ("factory", "onnx-dynamo", "onnx-legacy")
MODEL_SEED = 0
INPUT_SEED = 1
BATCH = 4
VOCAB = 256  # every language model's vocabulary: token ids are drawn below it
SEQ = 16
TIME_LIMIT_S = 300.0
ROUTE_AGREEMENT_DECADES = 0.25
CLOSE_DECADES = 0.5


@dataclass(frozen=True)
class Entry:
    """One corpus model: how to build it (seeded) and its inputs for a batch size."""

    name: str
    library: str
    make: Callable[[], nn.Module]
    inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]
    broken: bool = False
    note: str = ""


class FirstOutput(nn.Module):
    """Returns the wrapped model's first output (logits, last hidden state, sample) as a tensor.

    Libraries return ModelOutput/dataclass/tuple objects; the audit and the exporters want a tensor.
    `kwargs` are fixed call arguments (a diffusion timestep).
    """

    def __init__(self, model: nn.Module, **kwargs: object):
        super().__init__()
        self.model, self.kwargs = model, kwargs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(*inputs, **self.kwargs)
        if isinstance(out, torch.Tensor):
            return out
        if hasattr(out, "to_tuple"):
            return out.to_tuple()[0]
        return out[0]


class SequenceHead(nn.Module):
    """A torch.nn sequence model (LSTM, GRU, TransformerEncoder) with a linear head on every step."""

    def __init__(self, body: nn.Module, width: int, classes: int = 10):
        super().__init__()
        self.body, self.head = body, nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return self.head(out[0] if isinstance(out, tuple) else out)


class BasicBlock(nn.Module):
    """A ResNet basic block written with torch.nn (conv-BN-ReLU-conv-BN + identity/projection)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


def small_resnet() -> nn.Module:
    widths, layers, cin = (16, 32, 64), [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for i, width in enumerate(widths):
        layers += [BasicBlock(cin, width, 1 if i == 0 else 2), BasicBlock(width, width, 1)]
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def mlp(depth: int, width: int = 64, act: Callable[[], nn.Module] = nn.ReLU, norm: bool = False,
        init: Callable[[torch.Tensor], object] | None = None, bias_zero: bool = False) -> nn.Module:
    """A plain Linear(+BatchNorm1d)+activation stack with a linear head; `init` replaces the default."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width)] + ([nn.BatchNorm1d(width)] if norm else []) + [act()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if init is not None:
                init(module.weight)
            if bias_zero:
                nn.init.zeros_(module.bias)
    return model


def kaiming_mlp() -> nn.Module:
    return mlp(10, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), bias_zero=True)


def scaled(make: Callable[[], nn.Module], factor: float) -> Callable[[], nn.Module]:
    """The model with every weight layer (ndim >= 2) multiplied by `factor`: a bad init scale."""
    def build() -> nn.Module:
        model = make()
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.mul_(factor)
        return model
    return build


def zeroed(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """The model with every parameter zero: the zero-init trap (no unit differs from another)."""
    def build() -> nn.Module:
        model = make()
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model
    return build


def images(size: int, channels: int = 3) -> Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]:
    return lambda batch, gen: (torch.randn(batch, channels, size, size, generator=gen),)


def features(*shape: int) -> Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]:
    return lambda batch, gen: (torch.randn(batch, *shape, generator=gen),)


def tokens(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, VOCAB, (batch, SEQ), generator=gen),)


def latents_and_context(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    return torch.randn(batch, 4, 16, 16, generator=gen), torch.randn(batch, 8, 32, generator=gen)


def _torchvision(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision
        return torchvision.models.get_model(name, weights=None, **kwargs)
    return build


def _tv_vit() -> nn.Module:
    from torchvision.models import VisionTransformer
    return VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128,
                             num_classes=10)


def _tv_swin() -> nn.Module:
    from torchvision.models import SwinTransformer
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10)


def _timm(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm
        return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    return build


def _timm_mixer() -> nn.Module:
    """timm's MLP-Mixer class at a small size: its registered `mixer_*` factories pass their own
    patch_size and embed_dim next to the caller's (timm 1.0.31: "got multiple values for keyword
    argument 'patch_size'"), so no override reaches them."""
    from timm.models.mlp_mixer import MlpMixer
    return MlpMixer(num_classes=10, img_size=32, patch_size=8, num_blocks=4, embed_dim=64)


def _hf(model_class: str, config_class: str, **config: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers
        cfg = getattr(transformers, config_class)(**config)
        return FirstOutput(getattr(transformers, model_class)(cfg))
    return build


LM = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
          num_key_value_heads=2, max_position_embeddings=64)


def _diffusers(model_class: str, timestep: int | None, **config: object) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import diffusers
        model = getattr(diffusers, model_class)(**config)
        return FirstOutput(model) if timestep is None else FirstOutput(model, timestep=timestep)
    return build


def _unet_condition_call() -> nn.Module:
    """UNet2DConditionModel with the timestep fixed; inputs are (latents, text context)."""
    import diffusers
    model = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)

    class Call(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, sample: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            return self.model(sample, 10, encoder_hidden_states=context).sample
    return Call()


def _entries() -> list[Entry]:
    img32 = images(32)
    recurrent = features(24, 16)
    entries = [
        # torch.nn
        Entry(
            "nn_lstm", "torch.nn", lambda: SequenceHead(nn.LSTM(16, 32, num_layers=2, batch_first=True), 32), recurrent
        ),
        Entry(
            "nn_gru", "torch.nn", lambda: SequenceHead(nn.GRU(16, 32, num_layers=2, batch_first=True), 32), recurrent
        ),
        Entry(
            "nn_transformer_postln",
            "torch.nn",
            lambda: SequenceHead(
                nn.TransformerEncoder(
                    nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 4, enable_nested_tensor=False
                ),
                32,
            ),
            features(SEQ, 32),
        ),
        Entry(
            "nn_transformer_preln",
            "torch.nn",
            lambda: SequenceHead(
                nn.TransformerEncoder(
                    nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=True),
                    4,
                    enable_nested_tensor=False,
                ),
                32,
            ),
            features(SEQ, 32),
        ),
        Entry("nn_resnet", "torch.nn", small_resnet, img32),
        Entry("nn_mlp_kaiming", "torch.nn", kaiming_mlp, features(64)),
        # torchvision
        Entry("tv_resnet18", "torchvision", _torchvision("resnet18", num_classes=10), img32),
        Entry("tv_mobilenet_v2", "torchvision", _torchvision("mobilenet_v2", num_classes=10), img32),
        Entry("tv_densenet121", "torchvision", _torchvision("densenet121", num_classes=10), img32),
        Entry("tv_efficientnet_b0", "torchvision", _torchvision("efficientnet_b0", num_classes=10), img32),
        Entry("tv_mobilenet_v3_small", "torchvision", _torchvision("mobilenet_v3_small", num_classes=10), img32),
        Entry("tv_shufflenet_v2", "torchvision", _torchvision("shufflenet_v2_x0_5", num_classes=10), img32),
        Entry("tv_squeezenet", "torchvision", _torchvision("squeezenet1_1", num_classes=10), img32),
        Entry("tv_regnet_y_400mf", "torchvision", _torchvision("regnet_y_400mf", num_classes=10), img32),
        Entry("tv_convnext_tiny", "torchvision", _torchvision("convnext_tiny", num_classes=10), img32),
        Entry("tv_vit", "torchvision", _tv_vit, img32),
        Entry("tv_swin", "torchvision", _tv_swin, img32),
        # timm
        Entry("timm_resnet18", "timm", _timm("resnet18"), img32),
        Entry("timm_convnext_atto", "timm", _timm("convnext_atto"), img32),
        Entry("timm_efficientnet_b0", "timm", _timm("efficientnet_b0"), img32),
        Entry("timm_mobilenetv3", "timm", _timm("mobilenetv3_small_050"), img32),
        Entry("timm_vit_tiny", "timm", _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4), img32),
        Entry("timm_mixer", "timm", _timm_mixer, img32),
        # transformers
        Entry(
            "hf_gpt2",
            "transformers",
            _hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4),
            tokens,
        ),
        Entry("hf_llama", "transformers", _hf("LlamaForCausalLM", "LlamaConfig", **LM), tokens),
        Entry("hf_mistral", "transformers", _hf("MistralForCausalLM", "MistralConfig", **LM), tokens),
        Entry("hf_qwen2", "transformers", _hf("Qwen2ForCausalLM", "Qwen2Config", **LM), tokens),
        Entry(
            "hf_bert",
            "transformers",
            _hf(
                "BertForMaskedLM",
                "BertConfig",
                vocab_size=VOCAB,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                max_position_embeddings=64,
            ),
            tokens,
        ),
        Entry(
            "hf_t5",
            "transformers",
            _hf(
                "T5EncoderModel", "T5Config", vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4
            ),
            tokens,
        ),
        Entry(
            "hf_mamba",
            "transformers",
            _hf("MambaForCausalLM", "MambaConfig", vocab_size=VOCAB, hidden_size=64, state_size=8, num_hidden_layers=2),
            tokens,
        ),
        Entry(
            "hf_rwkv",
            "transformers",
            _hf(
                "RwkvForCausalLM",
                "RwkvConfig",
                vocab_size=VOCAB,
                hidden_size=64,
                num_hidden_layers=2,
                context_length=64,
            ),
            tokens,
        ),
        Entry(
            "hf_vit",
            "transformers",
            _hf(
                "ViTForImageClassification",
                "ViTConfig",
                image_size=32,
                patch_size=8,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                num_labels=10,
            ),
            img32,
        ),
        Entry(
            "hf_swin",
            "transformers",
            _hf(
                "SwinForImageClassification",
                "SwinConfig",
                image_size=32,
                patch_size=4,
                embed_dim=32,
                depths=[2, 2],
                num_heads=[2, 4],
                window_size=4,
                num_labels=10,
            ),
            img32,
        ),
        Entry(
            "hf_wav2vec2",
            "transformers",
            _hf(
                "Wav2Vec2Model",
                "Wav2Vec2Config",
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                conv_dim=(32, 32),
                conv_kernel=(10, 3),
                conv_stride=(5, 2),
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4,
            ),
            features(1600),
        ),
        # diffusers
        Entry(
            "df_unet2d",
            "diffusers",
            _diffusers(
                "UNet2DModel",
                10,
                sample_size=16,
                in_channels=3,
                out_channels=3,
                layers_per_block=1,
                block_out_channels=(32, 64),
                down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=8,
            ),
            images(16),
        ),
        Entry("df_unet2d_condition", "diffusers", _unet_condition_call, latents_and_context),
        Entry(
            "df_vae",
            "diffusers",
            _diffusers(
                "AutoencoderKL",
                None,
                in_channels=3,
                out_channels=3,
                block_out_channels=(32, 64),
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2,
                latent_channels=4,
                norm_num_groups=8,
                sample_size=32,
            ),
            img32,
        ),
        # broken variants: expected to fail to train (labels in train_labels.json)
        Entry("broken_mlp_x10", "torch.nn", scaled(kaiming_mlp, 10.0), features(64), True, "Kaiming MLP, weights x10"),
        Entry("broken_mlp_x0_1", "torch.nn", scaled(kaiming_mlp, 0.1), features(64), True, "Kaiming MLP, weights x0.1"),
        Entry(
            "broken_relu_plain50",
            "torch.nn",
            lambda: mlp(50),
            features(64),
            True,
            "50 Linear+ReLU, PyTorch default init, no normalisation",
        ),
        Entry(
            "broken_tanh_plain50",
            "torch.nn",
            lambda: mlp(50, act=nn.Tanh),
            features(64),
            True,
            "50 Linear+tanh, PyTorch default init, no normalisation",
        ),
        Entry("broken_zero_mlp", "torch.nn", zeroed(kaiming_mlp), features(64), True, "every parameter zero"),
        Entry("broken_zero_resnet", "torch.nn", zeroed(small_resnet), img32, True, "every parameter zero"),
        Entry(
            "broken_sigmoid_saturated",
            "torch.nn",
            lambda: mlp(10, act=nn.Sigmoid, init=lambda w: nn.init.normal_(w, 0.0, 4.0 / math.sqrt(w.shape[1]))),
            features(64),
            True,
            "10 Linear+sigmoid, std 4/sqrt(fan_in)",
        ),
        Entry(
            "broken_tanh_saturated",
            "torch.nn",
            lambda: mlp(20, act=nn.Tanh, init=lambda w: nn.init.normal_(w, 0.0, 3.0 / math.sqrt(w.shape[1]))),
            features(64),
            True,
            "20 Linear+tanh, std 3/sqrt(fan_in)",
        ),
        Entry(
            "broken_bn_deep50",
            "torch.nn",
            lambda: mlp(50, norm=True),
            features(64),
            True,
            "50 Linear->BatchNorm1d->ReLU, PyTorch default init",
        ),
        Entry(
            "broken_resnet_x10",
            "torch.nn",
            scaled(small_resnet, 10.0),
            img32,
            True,
            "torch.nn ResNet, weights x10 (BatchNorm makes the scale irrelevant but for the head)",
        ),
        Entry(
            "broken_gpt2_x10",
            "transformers",
            scaled(
                _hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4),
                10.0,
            ),
            tokens,
            True,
            "GPT-2, weights x10",
        ),
    ]
    return entries


CORPUS: dict[str, Entry] = {entry.name: entry for entry in _entries()}


def build(name: str, batch: int = BATCH) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The seeded model and its seeded example inputs."""
    entry = CORPUS[name]
    torch.manual_seed(MODEL_SEED)
    model = entry.make()
    return model, entry.inputs(batch, torch.Generator().manual_seed(INPUT_SEED))


def __getattr__(attr: str) -> Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """`build_<name>` for every corpus entry: the factory spec the factory route passes to the CLI."""
    if attr.startswith("build_") and attr[len("build_"):] in CORPUS:
        return lambda: build(attr[len("build_"):])
    raise AttributeError(attr)


class ExportedFileInvalid(Exception):
    """The exporter wrote a file that does not compute the model (onnxruntime refuses or disagrees)."""


def export(name: str, route: str, path: Path) -> None:
    """Export the model with the route's exporter, in eval mode as a user would, and check the
    file with onnxruntime (when installed): a file it cannot run, or whose outputs differ from
    the model's, is the exporter's failure (the legacy exporter writes transformers' Mamba
    `tensor_split(x, [n])` as n equal sections, which onnxruntime refuses to load)."""
    model, inputs = build(name)
    model.eval()
    if route == "onnx-dynamo":
        torch.onnx.export(model, inputs, str(path), dynamo=True)
    else:
        torch.onnx.export(model, inputs, str(path), dynamo=False, do_constant_folding=False, opset_version=17)
    with torch.no_grad():
        expected = model(*inputs)
    check_with_onnxruntime(path, inputs, expected)


def check_with_onnxruntime(path: Path, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor) -> None:
    try:
        import onnxruntime
    except ImportError:
        return
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs)}
        (got, *_) = session.run(None, feeds)
    except Exception as error:
        raise ExportedFileInvalid(f"onnxruntime cannot run the exported file ({exporter_reason(error)})") from None
    got = torch.from_numpy(got)
    if got.shape != expected.shape or not torch.allclose(
        got, expected.float(), rtol=1e-3, atol=1e-3 * float(expected.abs().max())
    ):
        raise ExportedFileInvalid("the exported file computes other outputs than the model (onnxruntime)")


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def exporter_reason(error: Exception) -> str:
    """The exporter's failure in one line: the exception type and first message line of what it
    wraps (the dynamo exporter's ConversionError names only its failed step), without the
    terminal colours its messages carry."""
    while error.__cause__ is not None:
        error = error.__cause__  # type: ignore[assignment]
    lines = [line.strip() for line in ANSI_ESCAPE.sub("", str(error)).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def audit_once(name: str, route: str) -> dict:
    """One audit in this process: the CLI's exit code and JSON report (or why there is none)."""
    from gradaudit.cli import main

    with tempfile.TemporaryDirectory() as folder:
        if route == "factory":
            source = f"{HERE}:build_{name}"
        else:
            source = str(Path(folder) / f"{name}.onnx")
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    export(name, route, Path(source))
            except Exception as error:  # the exporter's own failure, not gradaudit's
                return {"status": "export failed", "error": exporter_reason(error)}
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", source, "--format", "json"])
    report = json.loads(out.getvalue()) if code in (0, 1) else None
    return {"status": "audited", "exit": code, "report": report, "stderr": err.getvalue().strip()[-400:]}


def run_isolated(name: str, route: str, time_limit: float) -> dict:
    """audit_once in a subprocess, so a crash or hang costs one row."""
    command = [sys.executable, str(HERE), "--worker", name, route]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=time_limit, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"status": "worker died", "error": done.stderr.strip()[-400:]}
    return json.loads(lines[-1])


def labels() -> dict[str, dict]:
    return json.loads(LABELS.read_text()) if LABELS.is_file() else {}


def fails_to_train(name: str, known: dict[str, dict]) -> bool | None:
    """Labelled as failing to train: it stalls or diverges with every optimiser tried (None: no label)."""
    outcomes = known.get(name, {}).get("outcomes")
    return None if not outcomes else all(o != "trains" for o in outcomes.values())


@dataclass
class Row:
    name: str
    route: str
    status: str
    exit: int | None = None
    verdict: str = ""
    diagnosis: str = ""
    static: float | None = None
    measured: float | None = None
    codes: str = ""
    error: str = ""

    @property
    def gap(self) -> float | None:
        if self.static is None or self.measured is None:
            return None
        return abs(self.static - self.measured)


SEVERITY_MARK = {"error": "!", "warning": "?", "info": ""}


def row_from(name: str, route: str, result: dict) -> Row:
    row = Row(name, route, result["status"], error=result.get("error", ""))
    if result["status"] != "audited":
        return row
    row.exit, report = result["exit"], result["report"]
    if report is None:
        row.error = result.get("stderr", "")
        return row
    flow = report["gradient_flow"]
    row.verdict, row.diagnosis = report["verdict"], report["diagnosis"]
    row.static = _finite(flow["static"]["log10_ratio_first_last"]) if flow.get("static") else None
    row.measured = _finite(flow["dynamic"]["log10_ratio_first_last"]) if flow.get("dynamic") else None
    row.codes = " ".join(sorted({f["code"] + SEVERITY_MARK[f["severity"]] for f in report["findings"]}))
    return row


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def print_row(row: Row) -> None:
    if row.status != "audited":
        print(f"{row.name:<26}{row.route:<13}{row.status}: {row.error[:110]}", flush=True)
        return
    gap = "n/a" if row.gap is None else f"{row.gap:.2f}"
    detail = row.codes if row.exit in (0, 1) else row.error.splitlines()[-1][:100] if row.error else ""
    print(f"{row.name:<26}{row.route:<13}{row.exit!s:>4} {row.verdict:<5}{row.diagnosis:<10}{_fmt(row.static):>7}"
          f"{_fmt(row.measured):>8}{gap:>6}  {detail}", flush=True)


def print_header() -> None:
    print(f"{'model':<26}{'route':<13}{'exit':>4} {'verd.':<5}{'diagnosis':<10}{'static':>7}{'measured':>8}"
          f"{'|gap|':>6}  findings (! error, ? warning)")


def print_table(rows: list[Row], known: dict[str, dict]) -> None:
    print_header()
    for row in rows:
        print_row(row)
    print(summary(rows, known))


def summary(rows: list[Row], known: dict[str, dict]) -> str:
    crashes = [r for r in rows if r.status in ("timeout", "worker died") or r.exit in (2, 3)]
    false_failures = [r for r in rows if not CORPUS[r.name].broken and r.exit == 1]
    false_passes = [r for r in rows if CORPUS[r.name].broken and fails_to_train(r.name, known) and r.exit == 0]
    disagreements = sum(_routes_disagree([r for r in rows if r.name == name and r.exit in (0, 1)])
                        for name in dict.fromkeys(r.name for r in rows))
    gaps = [r.gap for r in rows if r.gap is not None]
    mae = sum(gaps) / len(gaps) if gaps else math.nan
    close = sum(g <= CLOSE_DECADES for g in gaps) / len(gaps) if gaps else math.nan
    exports = sum(r.status == "export failed" for r in rows)
    return (f"runs {len(rows)} (export failed {exports}) | crashes {len(crashes)} | false failures "
            f"{len(false_failures)} | false passes {len(false_passes)} | route disagreements {disagreements} | "
            f"static MAE {mae:.2f} decades over {len(gaps)} runs, {close:.0%} within {CLOSE_DECADES}, "
            f"max {max(gaps, default=math.nan):.2f}")


def _routes_disagree(rows: list[Row]) -> bool:
    statics = [r.static for r in rows if r.static is not None]
    return len({r.diagnosis for r in rows}) > 1 or (
        len(statics) > 1 and max(statics) - min(statics) > ROUTE_AGREEMENT_DECADES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="a corpus name (repeatable, or comma-separated)")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated subset of {','.join(ROUTES)}")
    parser.add_argument("--json", dest="json_path", help="write every row and report here")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds per audit")
    parser.add_argument("--jobs", type=int, default=1, help="audits run at once (each in its own process)")
    parser.add_argument("--list", action="store_true", help="print the corpus and exit")
    parser.add_argument("--from-json", help="print the table and summary of a stored --json file (current labels)")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "ROUTE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(1)
        print(json.dumps(audit_once(*args.worker)))
        return
    if args.list:
        for entry in CORPUS.values():
            print(f"{entry.name:<26}{entry.library:<14}{'broken: ' + entry.note if entry.broken else ''}")
        return
    names = [n for part in (args.only or [",".join(CORPUS)]) for n in part.split(",") if n]
    routes = [r for r in args.routes.split(",") if r]
    unknown = [n for n in names if n not in CORPUS] + [r for r in routes if r not in ROUTES]
    if unknown:
        parser.error(f"unknown corpus names or routes: {', '.join(unknown)}")
    known = labels()
    if args.from_json:
        stored = json.loads(Path(args.from_json).read_text())["runs"]
        print_table([row_from(*key.split("/"), result) for key, result in stored.items()], known)
        return
    runs = [(name, route) for name in names for route in routes]
    print_header()
    rows, results = [], {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending = [pool.submit(run_isolated, name, route, args.time_limit) for name, route in runs]
        for (name, route), future in zip(runs, pending):
            results[f"{name}/{route}"] = future.result()
            rows.append(row_from(name, route, results[f"{name}/{route}"]))
            print_row(rows[-1])
            if args.json_path:  # after every row, so an interrupted run keeps what it measured
                Path(args.json_path).write_text(json.dumps({"runs": results}, indent=1))
    line = summary(rows, known)
    print(line)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"summary": line, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
