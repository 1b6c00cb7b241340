"""A1111 sampler names → diffusers schedulers, built from the loaded model's own scheduler config."""

from __future__ import annotations

import inspect

import diffusers

from pipelines.errors import StudioError

KARRAS = {"use_karras_sigmas": True}

# name: (diffusers scheduler class name, extra config)  — the table in diffusers' scheduler docs.
SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", KARRAS),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", KARRAS),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", **KARRAS}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", KARRAS),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", KARRAS),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
# Flow-matching models (SD3, Flux) only work with flow-matching schedulers.
FLOW_SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler (flow)": ("FlowMatchEulerDiscreteScheduler", {}),
    "Euler (flow) Karras": ("FlowMatchEulerDiscreteScheduler", KARRAS),
}


SAMPLER_KEYS = {key for _, extra in {**SAMPLERS, **FLOW_SAMPLERS}.values() for key in extra}


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def build_scheduler(name: str, base_config, seed: int | None = None):
    """A new scheduler for sampler `name`, keeping the model's betas, prediction type and spacing."""
    table = {**SAMPLERS, **FLOW_SAMPLERS}
    if name not in table:
        raise StudioError(f"Unknown sampler '{name}'. Choose one of: {', '.join(table)}.")
    class_name, extra = table[name]
    cls = getattr(diffusers, class_name)
    # the sampler name alone decides Karras sigmas, solver type…: drop what a previous sampler set
    base_config = {k: v for k, v in dict(base_config).items() if k not in SAMPLER_KEYS}
    overrides = dict(extra)
    if seed is not None and "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
        overrides["noise_sampler_seed"] = seed  # SDE samplers draw their own noise: seed it too
    return cls.from_config(base_config, **overrides)



def check_schedule(scheduler, name: str, steps: int) -> None:
    """Karras sigmas on a schedule with a huge sigma_max (e.g. a cosine one) crowd the first steps onto one
    timestep; diffusers then starts one step late and fails at the end (IndexError). Refuse that up front.
    (Repeats near the end, as with many steps on SD's schedule, are harmless: sigmas still differ.)"""
    flow = "FlowMatch" in type(scheduler).__name__  # flow sigmas are set per call (Flux shifts them by size)
    if not getattr(scheduler.config, "use_karras_sigmas", False) or steps < 2 or flow:
        return
    scheduler.set_timesteps(steps)
    first = scheduler.timesteps[:2].tolist()
    if first[0] == first[1]:
        raise StudioError(f"'{name}' repeats timesteps at {steps} steps with this model's noise schedule "
                          f"({scheduler.config.beta_schedule}): use '{name.removesuffix(' Karras')}' or another "
                          "sampler.")
