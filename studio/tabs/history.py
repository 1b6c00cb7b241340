"""The History tab: the outputs folder as a paged gallery, newest first, with each image's parameters."""

from __future__ import annotations

import gradio as gr

from studio.tabs.pnginfo import read_file
from studio.widgets import send_buttons

PER_PAGE = 24
ALL = "all"


def build(engine) -> dict:
    store = engine.store
    with gr.Tab("History", id="history") as tab:
        with gr.Row():
            kind = gr.Dropdown([ALL, *store.kinds()], value=ALL, label="Folder", elem_id="history_kind", scale=2)
            with gr.Column(scale=3):
                with gr.Row():
                    previous = gr.Button("◀ Newer", size="sm", elem_id="history_newer", scale=0, min_width=110)
                    page_label = gr.Markdown("page 1 of 1", elem_id="history_page_label")
                    following = gr.Button("Older ▶", size="sm", elem_id="history_older", scale=0, min_width=110)
                    refresh = gr.Button("Refresh", size="sm", elem_id="history_refresh", scale=0, min_width=110)
        with gr.Row():
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Outputs (newest first)", columns=6, allow_preview=True,
                                     elem_id="history_gallery", buttons=["download", "fullscreen"])
            with gr.Column(scale=2):
                text = gr.Textbox(label="Parameters", lines=6, interactive=False, buttons=["copy"],
                                  elem_id="history_text")
                send = gr.Button("Reuse settings in text to image", size="sm", elem_id="history_reuse")
                send_image = send_buttons("history")
        page = gr.State(0)
        chosen = gr.State(None)  # the picked image's path
        paths = gr.State([])
        settings = gr.State({})

    def show(kind_name, page_number):
        found, pages = store.history(None if kind_name in (None, ALL) else kind_name, page_number, PER_PAGE)
        page_number = min(page_number, pages - 1)
        items = [(str(p), f"{p.parent.parent.name} · {p.name}") for p in found]
        return (items, [str(p) for p in found], page_number, f"page {page_number + 1} of {pages}",
                gr.update(choices=[ALL, *store.kinds()]))

    def pick(found, evt: gr.SelectData):
        if evt.index >= len(found):
            return "", {}, None
        parameters, _, restored = read_file(found[evt.index])
        return parameters, restored, found[evt.index]

    listing = [gallery, paths, page, page_label, kind]
    tab.select(show, [kind, page], listing, api_visibility="private")  # new outputs show up on opening the tab
    refresh.click(lambda k: show(k, 0), kind, listing, api_visibility="private")
    kind.input(lambda k: show(k, 0), kind, listing, api_visibility="private")
    previous.click(lambda k, n: show(k, max(0, n - 1)), [kind, page], listing, api_visibility="private")
    following.click(lambda k, n: show(k, n + 1), [kind, page], listing, api_visibility="private")
    gallery.select(pick, paths, [text, settings, chosen], api_visibility="private")
    return {"settings": settings, "send": send, "saved": chosen, "send_image": send_image}
