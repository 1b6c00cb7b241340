"""Start Diffusion Studio: `python launch.py` serves the studio on http://127.0.0.1:7860."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipelines.runtime import DEVICES, PRECISIONS, SLICING_MODES

log = logging.getLogger("studio")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="launch.py", description="Diffusion Studio: a local studio for diffusion "
                                     "models. Starts on the built-in demo models when no GPU or hub model is there.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: only this machine can connect)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument("--listen", action="store_true",
                        help="listen on all network interfaces (0.0.0.0); use with --auth")
    parser.add_argument("--auth", metavar="USER:PASS", help="require this user name and password for the UI and APIs")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where models run (default auto: cuda, then mps, then cpu)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="weights precision (default auto: fp16 on GPUs, fp32 on CPU)")
    parser.add_argument("--attention-slicing", choices=SLICING_MODES, default="auto",
                        help="slice attention to save VRAM (default auto: only when free VRAM is short)")
    parser.add_argument("--vae-tiling", action="store_true", help="decode images tile by tile (large sizes, less VRAM)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep models in RAM and move them to the GPU per step")
    parser.add_argument("--models-dir", default="models",
                        help="folder scanned for diffusers folders and .safetensors checkpoints (default models/)")
    parser.add_argument("--outputs-dir", default="outputs",
                        help="the only folder the studio writes results to (default outputs/)")
    args = parser.parse_args(argv)
    if args.auth and ":" not in args.auth:
        parser.error("--auth must be USER:PASS")
    return args


def bind_host(args: argparse.Namespace) -> tuple[str, str | None]:
    """The address to bind, and a warning when it is reachable from the network without --auth."""
    host = "0.0.0.0" if args.listen else args.host
    if host not in ("127.0.0.1", "localhost", "::1") and not args.auth:
        return host, f"Listening on {host} without --auth: anyone on your network can use the studio."
    return host, None


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from pipelines.engine import Engine
    from pipelines.errors import StudioError
    from pipelines.runtime import RuntimeOptions
    from studio.api import register_api
    from studio.app import build_app, launch_options

    host, warning = bind_host(args)
    if warning:
        log.warning(warning)
    try:
        options = RuntimeOptions(device=args.device, precision=args.precision,
                                 attention_slicing=args.attention_slicing, vae_tiling=args.vae_tiling,
                                 cpu_offload=args.cpu_offload)
        engine = Engine(args.models_dir, args.outputs_dir, options)
    except StudioError as error:
        sys.exit(f"error: {error}")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    app = build_app(engine)
    app.queue(max_size=64)
    server, _, _ = app.launch(server_name=host, server_port=args.port, auth=auth, prevent_thread_lock=True,
                              **launch_options(engine))
    register_api(server, engine, auth)
    app.block_thread()


if __name__ == "__main__":
    main()
