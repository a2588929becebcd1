"""Gin registration of the data loader factory.

Users' gin files set ``create_data_loader.num_workers`` and ``create_data_loader.prefetch_factor``
(the paper's binding names); call ``create_data_loader`` from here to get those bindings applied.
"""

from __future__ import annotations

import gin

from generative_recommenders.data import loader as _loader

create_data_loader = gin.external_configurable(
    _loader.create_data_loader, name="create_data_loader"
)

__all__ = ["create_data_loader"]
