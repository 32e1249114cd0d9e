"""The LightningModule: ten-view averaging (section 4.1) and the best accuracy kept across resumes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.models.alexnet import AlexNet
from src.models.classifier import TowerClassifier


def test_best_validation_accuracy_travels_in_checkpoints() -> None:
    module = TowerClassifier.for_evaluation(AlexNet(num_classes=2))
    module.val_acc_best(torch.tensor(0.8))
    resumed = TowerClassifier.for_evaluation(AlexNet(num_classes=2))
    resumed.load_state_dict(module.state_dict())
    assert resumed.val_acc_best.compute().item() == pytest.approx(0.8)


def test_several_views_average_the_softmax() -> None:
    torch.manual_seed(0)
    module = TowerClassifier.for_evaluation(AlexNet(num_classes=3)).eval()
    views = torch.randn(2, 10, 3, 224, 224)
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        loss, probabilities = module._step((views, labels))
        expected = F.softmax(module(views.flatten(0, 1)), dim=-1).view(2, 10, 3).mean(1)
    torch.testing.assert_close(probabilities, expected)
    torch.testing.assert_close(loss, F.nll_loss(expected.log(), labels))


def test_an_epochs_loss_is_the_mean_over_its_images_whatever_the_batch_sizes() -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    module = TowerClassifier.for_evaluation(AlexNet(num_classes=3)).eval()
    images, labels = torch.randn(5, 3, 224, 224), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        per_image = F.cross_entropy(module(images), labels, reduction="none")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    (result,) = trainer.test(module, DataLoader(TensorDataset(images, labels), batch_size=2), verbose=False)
    # batches of 2, 2 and 1 images: the mean of the three batch means would weigh the last image twice over
    assert result["test/loss"] == pytest.approx(per_image.mean().item(), rel=1e-5)
    mean_of_batch_means = torch.stack([batch.mean() for batch in per_image.split(2)]).mean().item()
    assert result["test/loss"] != pytest.approx(mean_of_batch_means, rel=1e-3)  # what it printed before
