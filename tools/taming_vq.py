"""taming-transformers' VQModel without its training loss: the same sub-modules
(encoder, decoder, quantize, quant_conv, post_quant_conv) and so the same state-dict keys.
VQModel itself imports pytorch-lightning and taming's training script; this needs torch
and taming-transformers (installed with --no-deps) alone. Used by the scripts beside it."""

import torch
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.vqvae.quantize import VectorQuantizer


class TamingVQ(torch.nn.Module):
    def __init__(self, ddconfig, n_embed, embed_dim):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = torch.nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = torch.nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
