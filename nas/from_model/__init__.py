"""`nas.from_model`: any user model (traced with torch.fx, or a Hugging Face transformer) as a supernet."""

from nas.from_model._convert import from_model
from nas.from_model._net import ModelSupernet

__all__ = ["ModelSupernet", "from_model"]
