import numpy as np
import pytest
import torch

# The models under test are tiny: one intra-op thread is as fast, and avoids OpenMP
# oversubscription (10x slowdowns) when other processes share the two cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
