"""Dataparser registration for nerfstudio (entry point ``neuface-dtu-data``).

Imports only the dataparser: importing method configs or the model here would create an import cycle, because
nerfstudio discovers dataparsers while it builds its own config unions.
"""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig

neuface_dtu_data = DataParserSpecification(
    config=NeuFaceDTUDataParserConfig(),
    description="IDR/NeuS-layout DTU scan (image/, mask/, cameras.npz) in the unit-sphere frame, for NeuFace",
)
