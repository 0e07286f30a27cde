"""SAM 3's two networks, built from ultralytics' classes with explicit sizes, and their checkpoint format.

ultralytics builds SAM 3 in ``ultralytics/models/sam/build_sam3.py`` with every size hard-coded:
``build_sam3_image_model`` (the *detector*: ViT + text encoder + DETR-style encoder/decoder + mask head,
used for text-prompted images) and ``build_interactive_sam3(..., with_backbone=False)`` (the *tracker*:
memory attention, memory encoder, SAM mask decoder; the video predictor feeds it the detector's backbone
features). ``build_detector``/``build_tracker`` below repeat those two functions line for line with the
sizes taken from a ``Sam3Arch``: ``FULL_ARCH`` reproduces ultralytics' model exactly (a unit test compares
the two state-dict layouts on the meta device), ``REDUCED_ARCH`` is the same classes at CPU-test size.

The checkpoint is Meta's ``sam3.pt`` layout: ``detector.<key>`` and ``tracker.<key>``, loaded by
ultralytics' own ``_load_checkpoint`` (the function ``build_sam3_*`` use), so a placeholder loads exactly
like the real file does.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = "sam3.pt"  # a model store directory holds these two files (scripts/importers/sam3.py writes them)
ARCH_FILE = "sam3_arch.json"  # {"variant": "full" | "reduced", "imgsz": int, "arch": Sam3Arch.to_json()}
IMGSZ = 1008  # SAM 3's native input size (72 x 72 patches of 14 px)
# The width every head shares (neck output, encoder/decoder, mask head, tracker). Not varied: the tracker's
# MemoryEncoder hard-codes 256 inside (its mask downsampler and fuser).
D_MODEL = 256


@dataclass(frozen=True)
class Sam3Arch:
    vit_embed_dim: int = 1024
    vit_depth: int = 32
    vit_heads: int = 16
    vit_mlp_ratio: float = 4.625
    vit_global_blocks: tuple[int, ...] = (7, 15, 23, 31)
    text_width: int = 1024
    text_heads: int = 16
    text_layers: int = 24
    ffn_dim: int = 2048  # feed-forward width of the encoder, decoder, geometry encoder, memory attention
    encoder_layers: int = 6
    decoder_layers: int = 6
    num_queries: int = 200
    geometry_layers: int = 3
    memory_attention_layers: int = 4

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["vit_global_blocks"] = list(self.vit_global_blocks)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Sam3Arch:
        data = dict(data)
        data["vit_global_blocks"] = tuple(data["vit_global_blocks"])
        return cls(**data)


FULL_ARCH = Sam3Arch()
# 34.1 M detector + 6.5 M tracker parameters (12.6 M of them the 49408 x 256 token embedding). Run at 252 px
# (see scripts/importers/sam3.py) it takes about 1.7 CPU-seconds per image and concept.
REDUCED_ARCH = Sam3Arch(
    vit_embed_dim=256,
    vit_depth=4,
    vit_heads=4,
    vit_global_blocks=(3,),
    text_width=256,
    text_heads=4,
    text_layers=2,
    ffn_dim=512,
    encoder_layers=1,
    decoder_layers=2,
    num_queries=100,
    geometry_layers=1,
    memory_attention_layers=1,
)


def _vision_backbone(arch: Sam3Arch):
    """``build_sam3._create_vision_backbone`` with the ViT sizes from ``arch``."""
    from ultralytics.models.sam.modules.blocks import PositionEmbeddingSine
    from ultralytics.models.sam.sam3.necks import Sam3DualViTDetNeck
    from ultralytics.models.sam.sam3.vitdet import ViT

    position_encoding = PositionEmbeddingSine(num_pos_feats=D_MODEL, normalize=True, scale=None, temperature=10000)
    vit = ViT(
        img_size=IMGSZ,
        pretrain_img_size=336,
        patch_size=14,
        embed_dim=arch.vit_embed_dim,
        depth=arch.vit_depth,
        num_heads=arch.vit_heads,
        mlp_ratio=arch.vit_mlp_ratio,
        norm_layer="LayerNorm",
        drop_path_rate=0.1,
        qkv_bias=True,
        use_abs_pos=True,
        tile_abs_pos=True,
        global_att_blocks=arch.vit_global_blocks,
        rel_pos_blocks=(),
        use_rope=True,
        use_interp_rope=True,
        window_size=24,
        pretrain_use_cls_token=True,
        retain_cls_token=False,
        ln_pre=True,
        ln_post=False,
        return_interm_layers=False,
        bias_patch_embed=False,
        compile_mode=None,
    )
    return Sam3DualViTDetNeck(
        position_encoding=position_encoding,
        d_model=D_MODEL,
        scale_factors=[4.0, 2.0, 1.0, 0.5],
        trunk=vit,
        add_sam2_neck=True,
    )


def build_detector(arch: Sam3Arch, tokenizer):
    """``build_sam3.build_sam3_image_model`` (without the checkpoint load) with sizes from ``arch``."""
    from torch import nn
    from ultralytics.models.sam.modules.blocks import PositionEmbeddingSine
    from ultralytics.models.sam.sam3.decoder import TransformerDecoder, TransformerDecoderLayer
    from ultralytics.models.sam.sam3.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from ultralytics.models.sam.sam3.geometry_encoders import SequenceGeometryEncoder
    from ultralytics.models.sam.sam3.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from ultralytics.models.sam.sam3.model_misc import DotProductScoring, TransformerWrapper
    from ultralytics.models.sam.sam3.sam3_image import SAM3SemanticModel
    from ultralytics.models.sam.sam3.text_encoder_ve import VETextEncoder
    from ultralytics.models.sam.sam3.vl_combiner import SAM3VLBackbone
    from ultralytics.nn.modules.transformer import MLP

    def mha(batch_first=None, dropout=0.1):
        kwargs = {"batch_first": batch_first} if batch_first is not None else {}
        return nn.MultiheadAttention(num_heads=8, dropout=dropout, embed_dim=D_MODEL, **kwargs)

    text_encoder = VETextEncoder(
        tokenizer=tokenizer, d_model=D_MODEL, width=arch.text_width, heads=arch.text_heads, layers=arch.text_layers
    )
    backbone = SAM3VLBackbone(visual=_vision_backbone(arch), text=text_encoder, scalp=1)

    encoder = TransformerEncoderFusion(
        layer=TransformerEncoderLayer(
            d_model=D_MODEL,
            dim_feedforward=arch.ffn_dim,
            dropout=0.1,
            pos_enc_at_attn=True,
            pos_enc_at_cross_attn_keys=False,
            pos_enc_at_cross_attn_queries=False,
            pre_norm=True,
            self_attention=mha(batch_first=True),
            cross_attention=mha(batch_first=True),
        ),
        num_layers=arch.encoder_layers,
        d_model=D_MODEL,
        num_feature_levels=1,
        frozen=False,
        use_act_checkpoint=True,
        add_pooled_text_to_img_feat=False,
        pool_text_with_mask=True,
    )
    decoder = TransformerDecoder(
        layer=TransformerDecoderLayer(
            d_model=D_MODEL,
            dim_feedforward=arch.ffn_dim,
            dropout=0.1,
            cross_attention=mha(),
            n_heads=8,
            use_text_cross_attention=True,
        ),
        num_layers=arch.decoder_layers,
        num_queries=arch.num_queries,
        return_intermediate=True,
        box_refine=True,
        num_o2m_queries=0,
        dac=True,
        boxRPB="log",
        d_model=D_MODEL,
        frozen=False,
        interaction_layer=None,
        dac_use_selfatt_ln=True,
        use_act_checkpoint=True,
        presence_token=True,
    )
    transformer = TransformerWrapper(encoder=encoder, decoder=decoder, d_model=D_MODEL)

    dot_prod_scoring = DotProductScoring(
        d_model=D_MODEL,
        d_proj=D_MODEL,
        prompt_mlp=MLP(
            input_dim=D_MODEL,
            hidden_dim=arch.ffn_dim,
            output_dim=D_MODEL,
            num_layers=2,
            residual=True,
            out_norm=nn.LayerNorm(D_MODEL),
        ),
    )
    segmentation_head = UniversalSegmentationHead(
        hidden_dim=D_MODEL,
        upsampling_stages=3,
        aux_masks=False,
        presence_head=False,
        dot_product_scorer=None,
        act_ckpt=True,
        cross_attend_prompt=mha(dropout=0),
        pixel_decoder=PixelDecoder(
            num_upsampling_stages=3, interpolation_mode="nearest", hidden_dim=D_MODEL, compile_mode=None
        ),
    )
    geometry_encoder = SequenceGeometryEncoder(
        pos_enc=PositionEmbeddingSine(num_pos_feats=D_MODEL, normalize=True, scale=None, temperature=10000),
        boxes_direct_project=True,
        boxes_pool=True,
        boxes_pos_enc=True,
        d_model=D_MODEL,
        num_layers=arch.geometry_layers,
        layer=TransformerEncoderLayer(
            d_model=D_MODEL,
            dim_feedforward=arch.ffn_dim,
            dropout=0.1,
            pos_enc_at_attn=False,
            pre_norm=True,
            pos_enc_at_cross_attn_queries=False,
            pos_enc_at_cross_attn_keys=True,
        ),
        use_act_ckpt=True,
        add_cls=True,
        add_post_encode_proj=True,
    )
    model = SAM3SemanticModel(
        backbone=backbone,
        transformer=transformer,
        input_geometry_encoder=geometry_encoder,
        segmentation_head=segmentation_head,
        num_feature_levels=1,
        o2m_mask_predict=True,
        dot_prod_scoring=dot_prod_scoring,
        use_instance_query=False,
        multimask_output=True,
    )
    return model.eval()


def build_tracker(arch: Sam3Arch):
    """``build_sam3.build_interactive_sam3(with_backbone=False)`` (no checkpoint load), sizes from ``arch``."""
    from ultralytics.models.sam.modules.blocks import RoPEAttention
    from ultralytics.models.sam.modules.encoders import MemoryEncoder
    from ultralytics.models.sam.modules.memory_attention import MemoryAttention, MemoryAttentionLayer
    from ultralytics.models.sam.modules.sam import SAM3Model

    feat = IMGSZ // 14
    memory_attention = MemoryAttention(
        batch_first=True,
        d_model=D_MODEL,
        pos_enc_at_input=True,
        layer=MemoryAttentionLayer(
            dim_feedforward=arch.ffn_dim,
            dropout=0.1,
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False,
            self_attn=RoPEAttention(
                embedding_dim=D_MODEL, num_heads=1, downsample_rate=1, rope_theta=10000.0, feat_sizes=[feat, feat]
            ),
            d_model=D_MODEL,
            cross_attn=RoPEAttention(
                embedding_dim=D_MODEL,
                num_heads=1,
                downsample_rate=1,
                kv_in_dim=64,
                rope_theta=10000.0,
                feat_sizes=[feat, feat],
                rope_k_repeat=True,
            ),
        ),
        num_layers=arch.memory_attention_layers,
    )
    model = SAM3Model(
        image_size=IMGSZ,
        image_encoder=None,
        memory_attention=memory_attention,
        memory_encoder=MemoryEncoder(out_dim=64, interpol_size=[1152, 1152]),
        backbone_stride=14,
        num_maskmem=7,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        compile_image_encoder=False,
        no_obj_embed_spatial=True,
        proj_tpos_enc_in_obj_ptrs=True,
        use_signed_tpos_enc_to_obj_ptrs=True,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
    )
    return model.eval()


def init_uninitialised_(detector, seed: int) -> None:
    """Fill the parameters SAM 3 allocates with ``torch.empty`` and only a checkpoint fills.

    The text encoder's ``positional_embedding`` and ``text_projection`` (garbage memory, often NaN: every
    output is NaN until they are set). CLIP's own init: normal, std 0.01 and ``width ** -0.5``.
    """
    import torch
    from ultralytics.models.sam.sam3.text_encoder_ve import TextTransformer

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in detector.modules():
            if isinstance(module, TextTransformer):
                pos = module.positional_embedding
                pos.copy_(torch.randn(pos.shape, generator=gen) * 0.01)
                if isinstance(module.text_projection, torch.nn.Parameter):
                    proj = module.text_projection
                    proj.copy_(torch.randn(proj.shape, generator=gen) * module.width**-0.5)


@contextlib.contextmanager
def parameters_on_meta():
    """Build modules without keeping their weights (shapes only): each parameter moves to the meta device as it
    is registered. ``torch.device("meta")`` cannot be used: SAM 3's ViT calls ``.item()`` while it is built."""
    import torch

    original = torch.nn.Module.register_parameter

    def register(self, name, param):
        original(self, name, param)
        if param is not None:
            self._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def checkpoint_state(detector, tracker) -> dict:
    """The two state dicts in Meta's ``sam3.pt`` key layout (what ``_load_checkpoint`` reads)."""
    state = {f"detector.{k}": v for k, v in detector.state_dict().items()}
    state.update({f"tracker.{k}": v for k, v in tracker.state_dict().items()})
    return {"model": state}


def load_checkpoint_(model, path: Path, *, tracker: bool) -> None:
    """ultralytics' own SAM 3 checkpoint loader (key remapping, ``strict=False``), as ``build_sam3_*`` call it."""
    from ultralytics.models.sam.build_sam3 import _load_checkpoint

    _load_checkpoint(model, str(path), interactive=tracker)


def build_full_from_checkpoint(path: Path):
    """ultralytics' own builders on a (real or placeholder) ``sam3.pt``: ``(detector, tracker)``."""
    from ultralytics.models.sam.build_sam3 import build_interactive_sam3, build_sam3_image_model

    from nets.sam3_tokenizer import clip_module_for_sam3

    with clip_module_for_sam3():
        detector = build_sam3_image_model(str(path))
    tracker = build_interactive_sam3(str(path), with_backbone=False)
    return detector, tracker


def build_from_checkpoint(arch: Sam3Arch, path: Path):
    """The same classes at ``arch``'s sizes, weights from ``path``: ``(detector, tracker)``."""
    from nets.sam3_tokenizer import make_tokenizer

    detector = build_detector(arch, make_tokenizer())
    tracker = build_tracker(arch)
    load_checkpoint_(detector, path, tracker=False)
    load_checkpoint_(tracker, path, tracker=True)
    return detector.eval(), tracker.eval()
