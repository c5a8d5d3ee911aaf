"""The Compare dock widget: metrics between a result layer and a ground-truth layer, per plane."""
from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Table

from ..core.metrics import evaluate
from .denoise import _image_choices, notify_error


def notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)
from .help import help_link
from .layers import follow_layers


class CompareWidget(Container):
    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.result = ComboBox(label="Result", choices=self._images, tooltip="e.g. a [mean] layer, or the noisy input")
        self.truth = ComboBox(label="Ground truth", choices=self._images)
        self.compute_button = PushButton(text="Compute")
        self.copy_button = PushButton(text="Copy table")
        self.table = Table()
        self.table.native.setMinimumHeight(160)  # several planes' rows visible, with a scroll bar beyond
        self.note = Label(value="PSNR, SSIM, MS-SSIM, NRMSE and MAE are computed after a least-squares scale-and-offset "
                                "fit of the result to the truth (CARE's protocol), on the truth's range")
        self.note.native.setWordWrap(True)
        self.help = help_link("compare", "Compare")
        self.extend([self.help, self.result, self.truth, self.compute_button, self.copy_button, self.note, self.table])
        self.compute_button.clicked.connect(self.compute)
        self.copy_button.clicked.connect(self.copy)
        follow_layers(napari_viewer, self.result, self.truth)
        self.reset_choices()

    def _images(self, _widget=None):
        return _image_choices(self._viewer)

    def compute(self):
        self.table.value = {"data": [], "index": [], "columns": []}  # no stale numbers after an error
        result, truth = self.result.value, self.truth.value
        if result is None or truth is None:
            notify_error("Select a result layer and a ground-truth layer")
            return
        pred, gt = np.asarray(result.data), np.asarray(truth.data)
        if pred.shape != gt.shape:
            notify_error(f"'{result.name}' {pred.shape} and '{truth.name}' {gt.shape} differ in shape")
            return
        if pred.ndim not in (2, 3) or min(pred.shape[-2:]) < 7:
            notify_error("Compare needs 2D planes or 3D stacks of at least 7×7 pixels")
            return
        if not np.allclose(result.scale, truth.scale) or not np.allclose(result.translate, truth.translate):
            notify_warning(f"'{result.name}' and '{truth.name}' have different scales or positions in the viewer; "
                           "they are compared pixel by pixel")
        planes = [(pred, gt)] if pred.ndim == 2 else list(zip(pred, gt))
        try:
            rows = [evaluate(p, g) for p, g in planes]
        except (ValueError, TypeError) as err:
            notify_error(f"Could not compare: {err}")
            return
        names = list(rows[0])
        data = [[round(r[n], 4) for n in names] for r in rows]
        if len(rows) > 1:
            data.append([round(float(np.mean([r[n] for r in rows])), 4) for n in names])
        index = [f"plane {i}" for i in range(len(rows))] + (["mean"] if len(rows) > 1 else [])
        self.table.value = {"data": data, "index": index, "columns": names}

    def as_tsv(self) -> str:
        value = self.table.to_dict("split")
        lines = ["\t".join(["", *value["columns"]])]
        lines += ["\t".join([str(i), *map(str, row)]) for i, row in zip(value["index"], value["data"])]
        return "\n".join(lines)

    def copy(self):
        from qtpy.QtWidgets import QApplication

        QApplication.clipboard().setText(self.as_tsv())
