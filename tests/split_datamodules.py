"""A real TerraTorch datamodule with the defect no config shows: it tests on its validation files
(as TerraTorch's own FireScarsNonGeoDataModule does), under a name bench's list does not know, so
only the job's comparison of the samples it resolves can catch it (tests/test_split_guard.py)."""

from terratorch.datamodules import GenericNonGeoSegmentationDataModule


class ValidationAsTest(GenericNonGeoSegmentationDataModule):
    def setup(self, stage: str) -> None:
        if stage != "test":
            super().setup(stage)
            return
        super().setup("validate")
        self.test_dataset = self.val_dataset
