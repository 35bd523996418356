"""Lighting: SH lights and how they replace the learned one. Pure data and maths (no viewer, no model).

    sh.py               real SH basis to l = 10, Lambertian (Funk-Hecke) factors, exact SH rotation
    light.py            SHEnvironmentLight, the learned light (checkpoint key `light.coefficients`)
    presets.py          bundled presets (neuface_ns/lights/*.npy), .npy / HDR loading, the NEUFACE_LIGHTS list
    environment_map.py  equirectangular .exr / .hdr maps projected to SH
    settings.py         RelightSettings (light, rotation, exposure matching, intensity, terms) -> SH light

Imports go one way: sh <- light, environment_map <- presets <- settings. Import from the submodules.
"""
