"""Real architectures at their library's default init, small configs, for the factory route.

Each factory returns (module, example inputs); the wrappers hand back the model's logits (or a
UNet's sample) tensor. Needs the zoo libraries (transformers, diffusers), never a runtime
dependency:

    PYTHONPATH=. /work/zoo-venv/bin/python -m gradaudit check benchmarks/factory_route_models.py:gpt2 --format json

Factories: gpt2 llama t5 vit mamba rwkv wav2vec2 unet lstm.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class Logits(nn.Module):
    """A transformers model called on one input, returning its `logits`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


class EncoderDecoder(nn.Module):
    """T5 with the same token ids as encoder and decoder input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, decoder_input_ids=ids).logits


class Denoiser(nn.Module):
    """A diffusers UNet with the timestep as a tensor input, as its pipelines pass it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t).sample


class SequenceHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.head = nn.LSTM(16, 32, batch_first=True), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _ids(vocab: int = 256) -> tuple[torch.Tensor]:
    return (torch.randint(0, vocab, (4, 16), generator=_seeded()),)


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return Logits(GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=256, n_positions=64))), _ids()


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=256)
    return Logits(LlamaForCausalLM(config)), _ids()


def t5():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_ff=128, num_heads=4, d_kv=16, vocab_size=256)
    return EncoderDecoder(T5ForConditionalGeneration(config)), _ids()


def vit():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, num_hidden_layers=4, hidden_size=64, intermediate_size=128,
                       num_attention_heads=4, num_labels=10)
    return Logits(ViTForImageClassification(config)), (torch.randn(4, 3, 32, 32, generator=_seeded()),)


def mamba():
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    config = MambaConfig(num_hidden_layers=2, hidden_size=64, state_size=8, vocab_size=256, use_mambapy=False)
    return Logits(MambaForCausalLM(config)), _ids()


def rwkv():
    from transformers import RwkvConfig, RwkvForCausalLM

    torch.manual_seed(0)
    config = RwkvConfig(num_hidden_layers=2, hidden_size=64, attention_hidden_size=64, intermediate_size=128,
                        vocab_size=256, context_length=64)
    return Logits(RwkvForCausalLM(config)), _ids()


def wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                            conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4, vocab_size=32)
    return Logits(Wav2Vec2ForCTC(config)), (torch.randn(2, 1600, generator=_seeded()),)


def unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    model = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                        norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return Denoiser(model), (torch.randn(4, 3, 16, 16, generator=_seeded()), torch.tensor([10] * 4))


def lstm():
    torch.manual_seed(0)
    return SequenceHead(), (torch.randn(4, 24, 16, generator=_seeded()),)
