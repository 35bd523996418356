"""Dataparser registration for nerfstudio (entry points ``neuface-dtu-data``, ``neuface-facescape-data``).

Imports only the dataparser: importing method configs or the model here would create an import cycle, because
nerfstudio discovers dataparsers while it builds its own config unions.
"""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from neuface_ns.data.dtu import NeuFaceDTUDataParserConfig
from neuface_ns.data.facescape import NeuFaceFaceScapeDataParserConfig

neuface_dtu_data = DataParserSpecification(
    config=NeuFaceDTUDataParserConfig(),
    description="IDR/NeuS-layout DTU scan (image/, mask/, cameras.npz) in the unit-sphere frame, for NeuFace",
)

neuface_facescape_data = DataParserSpecification(
    config=NeuFaceFaceScapeDataParserConfig(),
    description="FaceScape in the NeuFace layout (imface_image/, imface_mask/, imface_model/), face frame of 100 mm units",
)
