"""Client-side stages: each transforms an update before the secure sum and inverts it after."""

from secfl.stages.base import BaseStage
from secfl.stages.bitpack import BitPack
from secfl.stages.clip import L2Clip
from secfl.stages.ddg import DistributedDiscreteGaussian
from secfl.stages.ewwa import EwwaContribution
from secfl.stages.fedbat_bits import FedBatBits
from secfl.stages.fedbat_pack import FedBatPack
from secfl.stages.noise import GaussianNoise
from secfl.stages.qsgd import LowBitQuantize
from secfl.stages.quantize import Quantize
from secfl.stages.sign import SignBinarize

__all__ = ["BaseStage", "L2Clip", "GaussianNoise", "DistributedDiscreteGaussian", "EwwaContribution", "Quantize", "SignBinarize",
           "BitPack", "LowBitQuantize", "FedBatPack", "FedBatBits"]
