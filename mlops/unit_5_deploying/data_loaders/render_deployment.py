import os
from pathlib import Path

from unit_5_deploying.utils.deploying import render

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test


def workspace_folder() -> Path:
    """The course workspace (`mlops/`): two folders up from this block file."""
    from blockyard import runtime

    ctx = runtime.get()
    if ctx is not None and ctx.workspace_root:
        return Path(ctx.workspace_root)
    return Path(__file__).resolve().parents[2]


@data_loader
def render_deployment(*args, **kwargs) -> dict:
    """Write this workspace's deployment: image build context (Dockerfile), compose file,
    Kubernetes manifests and env-file templates (secret names, no values).

    Variables: `deploy_dir` (default: <data dir>/deploy), `image`
    (default: blockyard-<workspace>:latest), `workers`, `dask_workers`.
    Replaces Mage's Terraform/IAM setup: nothing here touches a cloud account.
    """
    from blockyard import settings

    root = workspace_folder()
    out_dir = Path(kwargs.get('deploy_dir') or settings.data_dir_for(root) / 'deploy')
    image = kwargs.get('image') or f'blockyard-{root.name}:latest'
    rendered = render(root, out_dir, image=image,
                      workers=int(kwargs.get('workers') or 2),
                      dask_workers=int(kwargs.get('dask_workers') or 2))
    print(f"rendered {len(rendered['files'])} files into {out_dir}")
    return rendered


@test
def test_rendered_every_part(rendered, *args) -> None:
    files = set(rendered['files'])
    for required in ('Dockerfile', 'compose.yaml', 'k8s/20-web.yaml', 'k8s/10-migrate-job.yaml',
                     'secrets/blockyard.env.example'):
        assert required in files, f'{required} was not rendered'
    text = (Path(rendered['dir']) / 'secrets' / 'blockyard.env.example').read_text()
    assert all(line.endswith('=') for line in text.splitlines() if line and not line.startswith('#')), \
        'the env template must hold secret names only, no values'
