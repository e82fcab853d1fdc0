"""Task-batched unrolled inner loops of networks, and their exact meta-gradients.

The network counterpart of :mod:`._unroll` (MAML, first-order MAML,
Meta-SGD, Reptile, and ANIL, which adapts the output layer only). Each
selected task's rows are shuffled (a per-task seed) and split into a
support part, on which ``n_steps`` gradient steps are taken from the prior
mean,

    theta_k+1 = theta_k - alpha * grad J_t(theta_k),

``J_t`` the task's support objective (datafit, l2 penalty on the weights,
transfer term toward ``theta0``), and a query part, on which the adapted
network is scored. With ``head_only`` (ANIL) only the output layer's
parameters move; the meta-gradient still reaches every layer.

Per task: ``forward_steps`` takes the steps, ``query`` scores the adapted
network and leaves the query gradient in ``adj``, and ``backward_steps``
back-propagates it through the steps, with exact Hessian-vector products
(``_mlp.network_hvp``) in second order. Sums over tasks go by blocks of
tasks in task order, whatever the number of threads (as in ``_unroll``).
The kernels allocate nothing: the buffers come from
``_workspaces.network_workspace``.

Only the second-order backward pass reads earlier steps' passes and
iterates: the step buffers are rings (step ``k`` in slot ``k % slots``),
which the workspace makes as long as the steps for it and one slot long
(two for the iterates) otherwise, so that the memory of the other uses
does not grow with ``n_steps``. Where nothing is back-propagated from the
rows afterwards (``FORWARD``: adaptation, Reptile) the passes also go over
the rows by blocks of ``config.block_rows``, so that the buffers do not
grow with the task either: the gradient of a step is the same sum, added
row after row in the same order (blocks of a multiple of four rows keep the
row products' groups of rows), so the steps are those of a single pass,
bit for bit.
"""

from collections import namedtuple

import numpy as np
from numba import prange

from ._datafits import datafit_derivatives, loss_scale
from ._jit import borrowing_kernel, helper, parallel_kernel
from ._mlp import HvpWork, network_backward, network_forward, network_hvp
from ._penalties import precision_times, smooth_penalty_gradient
from ._rows import TaskBuffers, shuffled_task

FORWARD = 0
FIRST_ORDER = 1
SECOND_ORDER = 2

NetworkUnrollConfig = namedtuple(
    "NetworkUnrollConfig",
    "alpha n_steps mode block_size head_only XTb penalized step_gradient "
    "block_rows")
NetworkUnrollConfig.__doc__ = """How tasks are adapted, and what is computed.

``alpha``: per-parameter inner steps; ``mode``: FORWARD (adapted
parameters and query losses only), FIRST_ORDER or SECOND_ORDER; sums over
tasks by blocks of ``block_size``; ``head_only``: adapt the output layer
only (ANIL); ``XTb``: the batch transposed (``_layout.transposed_batch``)
or empty; ``penalized``: whether the l2 penalty or the transfer term is
nonzero (without, their passes over the parameters are skipped);
``step_gradient``: whether to compute the meta-gradient with respect to
``alpha`` (Meta-SGD's), else ``out.grad_alpha`` is left untouched;
``block_rows``: the rows one pass takes (the passes' buffers hold that
many; a multiple of four where a task's rows go by blocks).
"""

NetworkWork = namedtuple(
    "NetworkWork",
    "order XT data indices indptr y sw acts dAs deltas Ds Z G U rz ra rd thetas "
    "grads vectors")
NetworkWork.__doc__ = """Buffers of ``network_unroll_tasks``, one slice per chunk
of tasks (leading axis): task rows, the rings of the steps' passes
(``acts``, ``dAs``, ``deltas``: ``(slots, n_layers, rows, width)``; kept
for a backward pass through the steps, ``n_steps + 1`` slots, the last for
the query), datafit buffers, the Hessian-vector product's (no rows where
none is taken), the rings of the iterates and gradients, and seven
parameter-sized vectors."""

NetworkOutputs = namedtuple(
    "NetworkOutputs", "sums theta query_loss grad_theta0 grad_alpha")
NetworkOutputs.__doc__ = """What ``network_unroll_tasks`` writes (as
``_unroll.UnrollOutputs``): adapted parameters and query losses per task,
per-block sums of the meta-gradients, and their sums over blocks."""

StepWork = namedtuple(
    "StepWork",
    "acts dAs deltas Ds Z G U hvp thetas grads tmp adj v hv direct x r")


@helper
def first_moved(net, head_only):
    """The first parameter the inner steps move."""
    return net.head if head_only else 0


@helper
def forward_steps(rows, ns, net, prior, alpha, n_steps, head_only, penalized,
                  block_rows, w):
    """``n_steps`` gradient steps from ``theta0`` on the support rows ``0:ns``.

    ``penalized`` and ``block_rows``: see ``NetworkUnrollConfig``. The last
    iterate is left in ``w.thetas[n_steps % len(w.thetas)]``.
    """
    d = prior.theta0.shape[0]
    L = net.sizes.shape[0] - 1
    first = first_moved(net, head_only)
    thetas = w.thetas
    for j in range(d):
        thetas[0, j] = prior.theta0[j]
    scale = loss_scale(net.mean_loss, rows.sw, 0, ns)
    # the hidden layers' outputs of step 0 can be reused by ANIL's later
    # steps only when one block holds them all
    blocked = ns > block_rows
    for k in range(n_steps):
        # the rings' slots of step k
        th = thetas[k % thetas.shape[0]]
        g = w.grads[k % w.grads.shape[0]]
        p = k % w.acts.shape[0]
        acts = w.acts[p]
        body = k == 0 or not head_only or blocked
        if not body and p > 0:
            # the hidden layers do not move: their outputs are step 0's
            for li in range(L - 1):
                for r in range(ns):
                    for j in range(net.sizes[li + 1]):
                        acts[li, r, j] = w.acts[0, li, r, j]
        if penalized:
            smooth_penalty_gradient(th, net, prior, d, w.tmp, g)
        else:
            g[:] = 0.0
        for lo in range(0, ns, block_rows):
            n = min(block_rows, ns - lo)
            network_forward(rows, lo, n, th, net, acts, w.Z, body)
            datafit_derivatives(net.code, rows.y, rows.sw, lo, lo + n, w.Z,
                                net.n_outputs, w.G, w.Ds[p], False)
            network_backward(rows, lo, n, th, net, acts, w.G, scale, w.dAs[p],
                             w.deltas[p], g, not head_only)
        # unsigned indices from a run-time start: see _layers
        nxt = thetas[(k + 1) % thetas.shape[0]]
        for j in range(first):
            nxt[j] = th[j]
        for j in range(np.uintp(first), np.uintp(d)):
            nxt[j] = th[j] - alpha[j] * g[j]


@helper
def query(rows, ns, net, theta, slot, block_rows, w):
    """Query loss at ``theta`` over rows ``ns:``; its gradient goes to ``w.adj``.

    The passes go to the rings' slot ``slot``, by blocks of ``block_rows`` rows
    (the loss is then summed block by block).
    """
    d = theta.shape[0]
    n = rows.n
    adj = w.adj
    for j in range(d):
        adj[j] = 0.0
    if ns == n:
        return 0.0
    scale = loss_scale(net.mean_loss, rows.sw, ns, n)
    loss = 0.0
    for lo in range(ns, n, block_rows):
        nq = min(block_rows, n - lo)
        network_forward(rows, lo, nq, theta, net, w.acts[slot], w.Z, True)
        loss += datafit_derivatives(net.code, rows.y, rows.sw, lo, lo + nq, w.Z,
                                    net.n_outputs, w.G, w.U, True)
        network_backward(rows, lo, nq, theta, net, w.acts[slot], w.G, scale,
                         w.dAs[slot], w.deltas[slot], adj, True)
    return scale * loss


@helper
def backward_steps(rows, ns, net, prior, config, w, grad_theta0, grad_alpha):
    """Back-propagate ``w.adj`` (the query gradient) through the steps.

    Adds the gradients with respect to ``theta0`` and, with
    ``config.step_gradient``, ``alpha`` to ``grad_theta0`` and ``grad_alpha``.
    Reads every step's slot of the rings: the workspace has them all in
    second order (and every step's gradient with ``step_gradient``).
    """
    alpha = config.alpha
    head_only = config.head_only
    second_order = config.mode == SECOND_ORDER
    penalized = config.penalized
    step_gradient = config.step_gradient
    d = prior.theta0.shape[0]
    first = first_moved(net, head_only)
    adj = w.adj
    v = w.v
    hv = w.hv
    direct = w.direct
    scale = loss_scale(net.mean_loss, rows.sw, 0, ns)
    for j in range(d):
        direct[j] = 0.0
    # adj is d(query loss)/d(theta_{k+1})
    start = np.uintp(first)
    lam2 = net.lam2
    l2w = net.l2w
    for k in range(config.n_steps - 1, -1, -1):
        if step_gradient:
            # every step's gradient is kept only where it is read here
            g = w.grads[k]
            for j in range(start, np.uintp(d)):
                grad_alpha[j] -= adj[j] * g[j]
        if not second_order:
            continue
        # adj <- adj - H_k (alpha adj), H_k the support objective's Hessian:
        # v = alpha adj, and hv starts as the l2 penalty's part of H_k v
        for j in range(first):
            v[j] = 0.0
            hv[j] = 0.0
        if penalized:
            for j in range(start, np.uintp(d)):
                vj = alpha[j] * adj[j]
                v[j] = vj
                hv[j] = lam2 * l2w[j] * vj
        else:
            for j in range(start, np.uintp(d)):
                v[j] = alpha[j] * adj[j]
                hv[j] = 0.0
        network_hvp(rows, ns, w.thetas[k], v, net,
                    (w.acts[k], w.dAs[k], w.deltas[k]), w.Ds[k], rows.sw, scale,
                    not head_only, w.hvp, hv)
        if not penalized:
            for j in range(d):
                adj[j] -= hv[j]
            continue
        precision_times(prior, v, w.tmp, d)
        for j in range(d):
            t = w.tmp[j]
            direct[j] += t
            adj[j] -= hv[j] + t
    for j in range(d):
        grad_theta0[j] += adj[j] + direct[j]


@helper
def chunk_work(work, c):
    """Chunk ``c``'s slices of the workspace."""
    vectors = work.vectors[c]
    buffers = TaskBuffers(work.order[c], work.XT[c], work.data[c],
                          work.indices[c], work.indptr[c], work.y[c], work.sw[c])
    hvp = HvpWork(work.rz[c], work.ra[c], work.rd[c], work.U[c])
    step_work = StepWork(work.acts[c], work.dAs[c], work.deltas[c], work.Ds[c],
                         work.Z[c], work.G[c], work.U[c], hvp, work.thetas[c],
                         work.grads[c], vectors[0], vectors[1], vectors[2],
                         vectors[3], vectors[4], vectors[5], vectors[6])
    return buffers, step_work


@helper
def sum_blocks(out, step_gradient):
    """Sums over tasks and blocks, in order: the result of the kernel.

    Sums ``out.grad_alpha`` only with ``step_gradient``.
    """
    sums = out.sums
    for j in range(sums.shape[1]):
        sums[0, j] = 0.0
    for b in range(out.grad_theta0.shape[0]):
        for j in range(sums.shape[1]):
            sums[0, j] += out.grad_theta0[b, j]
    if step_gradient:
        for j in range(sums.shape[1]):
            sums[1, j] = 0.0
        for b in range(out.grad_alpha.shape[0]):
            for j in range(sums.shape[1]):
                sums[1, j] += out.grad_alpha[b, j]
    total = 0.0
    for s in range(out.query_loss.shape[0]):
        total += out.query_loss[s]
    return total


@borrowing_kernel
def network_unroll_tasks(c, n_chunks, batch, net, prior, meta_batch, config,
                         work, out):
    """Unrolled inner loops of the meta-batch's tasks, with meta-gradients.

    As ``_unroll.unroll_tasks``, for a network (``net``, a
    ``_network.NetworkArrays``): this call does chunk ``c`` of
    ``n_chunks``; with a single chunk it also returns the sum of the query
    losses and fills ``out.sums``.
    """
    task_sel = meta_batch.task_sel
    n_sel = task_sel.shape[0]
    block_size = config.block_size
    n_blocks = (n_sel + block_size - 1) // block_size
    s_lo = min(n_sel, (c * n_blocks // n_chunks) * block_size)
    s_hi = min(n_sel, ((c + 1) * n_blocks // n_chunks) * block_size)
    buffers, w = chunk_work(work, c)
    d = prior.theta0.shape[0]
    n_steps = config.n_steps
    for s in range(s_lo, s_hi):
        b = s // block_size
        # (FORWARD: no per-block sums, see _network_calls)
        if s == b * block_size and config.mode != FORWARD:
            out.grad_theta0[b, :d] = 0.0
            if config.step_gradient:
                out.grad_alpha[b, :d] = 0.0
        rows = shuffled_task(batch, task_sel[s], meta_batch.seeds[s],
                             net.n_features, False, config.XTb, buffers)
        ns = rows.n - min(meta_batch.n_query[s], rows.n)
        forward_steps(rows, ns, net, prior, config.alpha, n_steps,
                      config.head_only, config.penalized, config.block_rows, w)
        adapted = w.thetas[n_steps % w.thetas.shape[0]]
        for j in range(d):
            out.theta[s, j] = adapted[j]
        out.query_loss[s] = query(rows, ns, net, adapted,
                                  n_steps % w.acts.shape[0], config.block_rows, w)
        if config.mode == FORWARD:
            continue
        backward_steps(rows, ns, net, prior, config, w, out.grad_theta0[b],
                       out.grad_alpha[b])
    if n_chunks == 1:
        return sum_blocks(out, config.step_gradient)
    return 0.0


@parallel_kernel
def network_unroll_parallel(n_chunks, batch, net, prior, meta_batch, config,
                            work, out):
    """``network_unroll_tasks`` with its chunks on numba's threads (same results)."""
    for c in prange(n_chunks):
        # prange's index is unsigned: as it is, it would compile the kernel
        # a second time
        network_unroll_tasks(np.intp(c), n_chunks, batch, net, prior,
                             meta_batch, config, work, out)
    return sum_blocks(out, config.step_gradient)
