/* Lamina — the model graph: nodes, activation and gradient buffers, flat parameters. */
#include "arena-private.h"
#include "layer-private.h"

#include <lamina/lamina.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters start on 64-byte boundaries inside the flat tensors, so a device backend can bind
 * each one as an aligned range and vector loads never straddle two parameters. */
#define PARAM_ALIGN_ELEMS 16

/* The data nodes: the input, then one per target (the first, y's, read as "labels"); the
 * layers follow them (LmnModel.first_layer). */
enum { NODE_INPUT = 0, NODE_LABELS = 1 };

typedef struct {
    LmnLayer *layer; /* NULL for the data nodes */
    guint n_inputs;
    guint *inputs;   /* node indices */
    LmnTensorInfo info;
    guint n_consumers;
    gboolean needs_grad;
    /* Fine-tuning: the layer's parameters are frozen ([layer] trainable = false), and whether
     * backward runs it at all (it has trainable parameters, or an input that needs a gradient) */
    gboolean frozen;
    gboolean runs_backward;
    /* A loss layer: its output is a scalar, and backward starts it with @weight. */
    gboolean is_loss;
    float weight;
    /* Whether the node's value depends on the model input: lmn_model_backward_input() runs only
     * those layers. */
    gboolean reads_input;
    LmnTensor *out_full;  /* [max_batch, ...] */
    LmnTensor *grad_full; /* [max_batch, ...] or NULL */
    LmnTensor *out;       /* views for the current batch */
    LmnTensor *grad;
    /* Per input: where the layer writes that input's gradient.  It is the input node's own
     * gradient when this layer is its only consumer, else a private buffer summed into it. */
    LmnTensor **edge_full;
    LmnTensor **edge;
    gboolean grad_written; /* during backward: has any consumer written ->grad yet */
    /* Activity regularisation ([layer] activity_l1 / activity_l2): the coefficients, and a
     * scratch like the output for sign(output), live only during the node's backward pass. */
    float activity_l1, activity_l2;
    LmnTensor *act_full;
    LmnTensor *act;
    /* Where the node's parameters start in the flat tensors (where they would, without any):
     * everything from there on belongs to this node and the ones after it. */
    gint64 param_offset;
    /* Forward fusion (plan_fusion): this node also computes the next one's forward, described
     * by @fusion; or this node's forward is computed by the node before it. */
    gboolean has_fusion;
    LmnLayerFusion fusion;
    gboolean fused_forward;
    /* Backward fusion (plan_fusion): this activation node's backward is computed by its one
     * consumer, node @grad_fused_into (0: not fused); that consumer has @grad_fusion_of, the
     * activation's index, and @grad_fusion, its function. */
    guint grad_fused_into;
    guint grad_fusion_of;
    LmnLayerFusion grad_fusion;
    /* A reshaping layer (LMN_LAYER_FLAG_RESHAPE) whose output is a view of its input's
     * memory: the planner gives it no buffer of its own (plan_fusion). */
    gboolean aliases_input;
    /* A loss whose training forward writes its input gradients (plan_fusion), and whether the
     * last forward did, so backward skips the layer. */
    gboolean loss_grad_in_forward;
    gboolean loss_grad_ready;
} Node;

struct _LmnModel {
    LmnBackend *backend;
    LmnShape input_shape;
    LmnTensorInfo target;
    GArray *nodes; /* Node */
    /* The last layer's node; it is a loss unless the model was built with
     * LMN_MODEL_ALLOW_NO_LOSS and ends in another layer (then has_loss is FALSE, backward starts
     * from a caller's output gradient, and without a target the labels node has no buffer). */
    guint loss_node;
    gboolean has_loss;
    gboolean has_target;
    /* Several losses: node indices of the loss layers in file order, and, unless the model has
     * one loss of weight 1 (whose output is then the loss itself, as always), a scalar holding
     * the sum of weight * loss after each forward. */
    guint first_layer;
    guint n_targets; /* target nodes with data: 0 without targets, else 1 + the config's others */
    LmnTensorInfo *target_infos;
    guint n_losses;
    guint *losses;
    LmnTensor *loss_total;
    /* lmn_model_backward_from() accumulates: the gradients before the call, added back after
     * the layers (which overwrite theirs) ran.  Allocated on its first use. */
    LmnTensor *grads_saved;
    LmnTensor *params;
    LmnTensor *grads;
    gint64 n_parameters;
    gint64 max_batch;
    gint64 batch;
    /* Whether backward also computes dL/d(input) (lmn_model_set_input_grad): off, the input node
     * has no gradient buffer and the layers reading it get NULL input gradients for it. */
    gboolean input_grad;
    /* The mode of the last lmn_model_forward(), which backward differentiates: an evaluation
     * forward (dropout off, batch-norm running statistics) has another derivative than a
     * training one, and an attack needs the former.  TRUE before the first forward. */
    gboolean last_training;
    /* The activation arena of the last lmn_model_prepare(), in bytes: its size, what one
     * allocation per buffer would take, and the most bytes live at once (a lower bound). */
    gint64 arena_bytes;
    gint64 arena_unshared_bytes;
    gint64 arena_peak_bytes;
    guint arena_segments;
    LmnRegistry *registry;
    const LmnConfig *cfg;
    /* lmn_model_set_backward_hook() */
    LmnModelBackwardHook backward_hook;
    gpointer backward_hook_data;
};

static Node *node_at(const LmnModel *m, guint i)
{
    return &g_array_index(m->nodes, Node, i);
}

static gint loss_target_node(const LmnModel *model, guint index);

/* LmnLayerPeerLookup: the built layer named @name (layers are built in config order, so a node
 * not built yet has no layer). */
static LmnLayer *model_peer(gpointer data, const char *name)
{
    const LmnModel *m = data;
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        LmnLayer *l = node_at(m, i)->layer;
        if (l != NULL && g_str_equal(lmn_layer_get_name(l), name))
            return l;
    }
    return NULL;
}

static void clear_batch_views(LmnModel *m)
{
    for (guint i = 0; i < m->nodes->len; i++) {
        Node *n = node_at(m, i);
        g_clear_pointer(&n->out, lmn_tensor_unref);
        g_clear_pointer(&n->grad, lmn_tensor_unref);
        g_clear_pointer(&n->act, lmn_tensor_unref);
        for (guint j = 0; j < n->n_inputs; j++)
            if (n->edge)
                g_clear_pointer(&n->edge[j], lmn_tensor_unref);
    }
    m->batch = 0;
}

void lmn_model_free(LmnModel *model)
{
    if (!model)
        return;
    clear_batch_views(model);
    for (guint i = 0; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        if (n->layer)
            lmn_layer_free(n->layer);
        g_free(n->inputs);
        g_clear_pointer(&n->out_full, lmn_tensor_unref);
        g_clear_pointer(&n->grad_full, lmn_tensor_unref);
        g_clear_pointer(&n->act_full, lmn_tensor_unref);
        for (guint j = 0; j < n->n_inputs; j++)
            if (n->edge_full)
                g_clear_pointer(&n->edge_full[j], lmn_tensor_unref);
        g_free(n->edge_full);
        g_free(n->edge);
    }
    g_array_unref(model->nodes);
    g_clear_pointer(&model->params, lmn_tensor_unref);
    g_clear_pointer(&model->grads, lmn_tensor_unref);
    g_clear_pointer(&model->grads_saved, lmn_tensor_unref);
    g_clear_pointer(&model->loss_total, lmn_tensor_unref);
    g_free(model->target_infos);
    g_free(model->losses);
    lmn_backend_unref(model->backend);
    g_free(model);
}

static guint find_node(const LmnModel *m, const LmnConfig *cfg, const char *name)
{
    if (g_str_equal(name, "input"))
        return NODE_INPUT;
    if (g_str_equal(name, "labels"))
        return NODE_LABELS;
    if (g_str_has_prefix(name, LMN_CONFIG_TARGET_PREFIX)) {
        const char *target = name + strlen(LMN_CONFIG_TARGET_PREFIX);
        for (guint t = 1; t < lmn_config_get_n_targets(cfg); t++)
            if (g_str_equal(lmn_config_get_target_name(cfg, t), target))
                return NODE_LABELS + t;
    }
    for (guint i = 0; i < lmn_config_get_n_layers(cfg); i++)
        if (g_str_equal(lmn_config_get_layer(cfg, i)->name, name))
            return m->first_layer + i;
    g_assert_not_reached(); /* lmn_config_validate resolved every input */
}

static gint64 align_up(gint64 v)
{
    return (v + PARAM_ALIGN_ELEMS - 1) / PARAM_ALIGN_ELEMS * PARAM_ALIGN_ELEMS;
}

/* Builds layer @i of the config from its inputs' infos. */
static gboolean build_node(LmnModel *m, guint i, GError **error)
{
    const LmnConfig *cfg = m->cfg;
    const LmnLayerConfig *lc = lmn_config_get_layer(cfg, i);
    Node *n = node_at(m, m->first_layer + i);
    n->n_inputs = g_strv_length(lc->inputs);
    n->inputs = g_new0(guint, n->n_inputs);
    LmnTensorInfo infos[16];
    if (n->n_inputs > G_N_ELEMENTS(infos)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "%s: %u inputs; at most %zu are supported", lc->where, n->n_inputs,
                    G_N_ELEMENTS(infos));
        return FALSE;
    }
    for (guint j = 0; j < n->n_inputs; j++) {
        n->inputs[j] = find_node(m, cfg, lc->inputs[j]);
        if (n->inputs[j] >= NODE_LABELS && n->inputs[j] < m->first_layer && !m->has_target) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: this layer reads 'labels', but the model was built without targets",
                        lc->where);
            return FALSE;
        }
        const Node *src = node_at(m, n->inputs[j]);
        /* Checked before the layer is built, which would only see a scalar input. */
        if (src->is_loss) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: a loss must be the last layer of its branch: its output is the "
                        "scalar loss, which must not feed another layer, but layer '%s' reads it "
                        "(a model's losses are summed with their weights)",
                        lmn_config_get_layer(cfg, n->inputs[j] - m->first_layer)->where, lc->name);
            return FALSE;
        }
        infos[j] = src->info;
        node_at(m, n->inputs[j])->n_consumers++;
    }
    g_autoptr(GError) local = NULL;
    n->layer = lmn_layer_new_in_model(m->registry, lc->type, lc->name, i, lc->params, m->backend,
                                      n->n_inputs, infos, model_peer, m, &local);
    if (!n->layer) {
        g_set_error(error, local->domain, local->code, "%s: %s", lc->where, local->message);
        return FALSE;
    }
    n->info = *lmn_layer_get_output_info(n->layer);
    if (lc->tuning_where && lmn_layer_get_n_params(n->layer) == 0) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: layer '%s' (%s) has no parameters to freeze or to give a learning rate",
                    lc->tuning_where, lc->name, lc->type);
        return FALSE;
    }
    n->frozen = !lc->trainable;
    n->is_loss = lmn_layer_is_loss(n->layer);
    n->weight = n->is_loss ? (float) lc->loss_weight : 1.0f;
    n->activity_l1 = (float) lc->activity_l1;
    n->activity_l2 = (float) lc->activity_l2;
    if (n->is_loss && (n->activity_l1 > 0 || n->activity_l2 > 0)) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "%s: layer '%s' is a loss; activity_l1 and activity_l2 regularise the output "
                    "of another layer (put them on the layer whose activations to penalise)",
                    lc->reg_where, lc->name);
        return FALSE;
    }
    return TRUE;
}

/* Which layers backward runs and which outputs need a gradient: a layer runs when it has
 * parameters to train or an input that needs a gradient (in file order, so that is known for
 * its inputs first), and its output then needs one.  The rest of the backward pass, below the
 * lowest layer that learns (frozen layers, or parameter-free layers reading the input such as a
 * flatten), is skipped: the first dense layer of an MLP computes no input gradient, which would
 * cost as much as its forward product.  With input gradients on, the input needs one, so every
 * layer on its way runs. */
static void plan_backward(LmnModel *m)
{
    node_at(m, NODE_INPUT)->reads_input = TRUE;
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        Node *n = node_at(m, i);
        gboolean runs = !n->frozen && lmn_layer_get_n_params(n->layer) > 0;
        for (guint j = 0; !runs && j < n->n_inputs; j++)
            runs = node_at(m, n->inputs[j])->needs_grad;
        n->runs_backward = runs;
        n->reads_input = FALSE;
        for (guint j = 0; j < n->n_inputs; j++)
            n->reads_input = n->reads_input || node_at(m, n->inputs[j])->reads_input;
        /* The last layer's output gradient is the caller's, and a loss's is its weight. */
        n->needs_grad = runs && i != m->loss_node && !n->is_loss;
    }
}

static const char *where_of(const LmnModel *m, guint node)
{
    return lmn_config_get_layer(m->cfg, node - m->first_layer)->where;
}

/* Every layer but a loss must feed something, or its parameters would never learn; only a
 * loss-free model (LMN_MODEL_ALLOW_NO_LOSS) ends in another layer.  A custom loop may end the
 * model in any layer (a generator, a feature extractor), but not with a loss before it, as
 * backward would never reach what lies after that loss. */
static gboolean check_consumers(LmnModel *m, LmnModelFlags flags, GError **error)
{
    if (!node_at(m, m->loss_node)->is_loss) {
        if (m->n_losses > 0) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: a loss must be the last layer, but layer '%s' after it feeds no "
                        "loss (its output is not used by any later layer)",
                        where_of(m, m->losses[m->n_losses - 1]),
                        lmn_layer_get_name(node_at(m, m->loss_node)->layer));
            return FALSE;
        }
        if (!(flags & LMN_MODEL_ALLOW_NO_LOSS)) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: the last layer must be a loss (e.g. type = softmax_cross_entropy)",
                        where_of(m, m->loss_node));
            return FALSE;
        }
    }
    for (guint i = m->first_layer; i < m->loss_node; i++) {
        Node *n = node_at(m, i);
        if (n->n_consumers == 0 && !n->is_loss) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                        "%s: the output of this layer is not used by any later layer",
                        where_of(m, i));
            return FALSE;
        }
    }
    plan_backward(m);
    return TRUE;
}

/* Forward fusion: an element-wise activation layer (relu, tanh, ...) whose one input is the
 * layer just before it, and that layer's only consumer, is computed by that layer when it fuses
 * activations (dense: in its GEMM's epilogue, while each block of the output is in cache or
 * registers).  Both outputs are still written, so the activation's backward, the layer outputs a
 * caller reads and activity penalties see the same values; on the CPU backend the results are
 * bit-identical to unfused runs.  Nothing else runs between the two, and forward outputs live
 * for the whole step (list_buffers), so writing the activation's output early is safe.
 *
 * Backward fusion: such an activation layer whose input feeds nothing else, whose output feeds
 * exactly one layer and that layer through its only input, and which has no activity penalty
 * (that would add to the gradient between the two), has its backward computed by that consumer
 * when it fuses activation gradients (dense: its input-gradient GEMM's epilogue multiplies by
 * f').  The consumer then writes the activation's input gradient directly, earlier in the step
 * than the activation would have: list_buffers starts that buffer's lifetime there.
 *
 * A reshaping layer (flatten) gets its input's memory as its output, so its forward copy does
 * nothing; it never writes that memory otherwise, and its input lives for the whole step like
 * every forward output.  Its gradients keep their own buffers.
 *
 * A loss layer that can (softmax_cross_entropy: in the pass that computes its probabilities)
 * writes its input gradient in a training forward, and backward then skips it: the gradient
 * no longer waits for a separate pass over the probabilities.  Only at weight 1 (no scaling
 * after it) and where no input has an activity penalty (which backward adds to the same
 * gradient).  The gradient then lives from the forward to the end of the step in memory of its
 * own, so a second backward of the same forward (an attack's input-gradient pass, then the
 * parameters') finds it intact.
 *
 * LAMINA_FUSE=0 turns all four off (to compare). */
static gboolean plan_fusion(LmnModel *m, GError **error)
{
    const char *env = g_getenv("LAMINA_FUSE");
    if (env != NULL && *env != '\0' && !g_str_equal(env, "1") && !g_str_equal(env, "0")) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                    "LAMINA_FUSE is '%s': expected 1 (fuse activations into the layer before "
                    "them, the default) or 0 (run every layer on its own); set one or unset it",
                    env);
        return FALSE;
    }
    if (g_strcmp0(env, "0") == 0)
        return TRUE;
    for (guint i = m->first_layer; i + 1 < m->nodes->len; i++) {
        Node *p = node_at(m, i), *a = node_at(m, i + 1);
        LmnUnaryOp op;
        float alpha;
        if (p->is_loss || a->is_loss || p->fused_forward || p->n_consumers != 1 ||
            a->n_inputs != 1 || a->inputs[0] != i || p->info.dtype != LMN_DTYPE_F32 ||
            a->info.dtype != LMN_DTYPE_F32)
            continue;
        if (!lmn_layer_has_flag(p->layer, LMN_LAYER_FLAG_FUSES_ACTIVATION) ||
            !lmn_layer_as_unary(a->layer, &op, &alpha))
            continue;
        p->has_fusion = TRUE;
        p->fusion =
            (LmnLayerFusion){.struct_size = sizeof(LmnLayerFusion), .op = op, .alpha = alpha};
        a->fused_forward = TRUE;
    }
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        Node *l = node_at(m, i);
        if (!l->is_loss || l->weight != 1.0f ||
            !lmn_layer_has_flag(l->layer, LMN_LAYER_FLAG_LOSS_GRAD_IN_FORWARD))
            continue;
        gboolean penalties = FALSE;
        for (guint j = 0; j < l->n_inputs; j++) {
            const Node *src = node_at(m, l->inputs[j]);
            penalties = penalties || src->activity_l1 > 0 || src->activity_l2 > 0;
        }
        l->loss_grad_in_forward = !penalties;
    }
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        Node *r = node_at(m, i);
        const Node *in = r->n_inputs == 1 ? node_at(m, r->inputs[0]) : NULL;
        r->aliases_input = in != NULL && !r->is_loss &&
                           lmn_layer_has_flag(r->layer, LMN_LAYER_FLAG_RESHAPE) &&
                           r->info.dtype == in->info.dtype &&
                           lmn_shape_numel(&r->info.shape) == lmn_shape_numel(&in->info.shape);
    }
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        Node *a = node_at(m, i);
        LmnUnaryOp op;
        float alpha;
        if (a->is_loss || a->n_inputs != 1 || a->n_consumers != 1 || a->activity_l1 > 0 ||
            a->activity_l2 > 0 || a->info.dtype != LMN_DTYPE_F32 ||
            node_at(m, a->inputs[0])->n_consumers != 1 ||
            !lmn_layer_as_unary(a->layer, &op, &alpha))
            continue;
        guint c = i + 1;
        while (c < m->nodes->len &&
               !(node_at(m, c)->n_inputs == 1 && node_at(m, c)->inputs[0] == i))
            c++;
        if (c >= m->nodes->len)
            continue; /* its consumer reads it among several inputs */
        Node *cn = node_at(m, c);
        if (cn->is_loss || !lmn_layer_has_flag(cn->layer, LMN_LAYER_FLAG_FUSES_ACTIVATION_GRAD))
            continue;
        a->grad_fused_into = c;
        cn->grad_fusion_of = i;
        cn->grad_fusion =
            (LmnLayerFusion){.struct_size = sizeof(LmnLayerFusion), .op = op, .alpha = alpha};
    }
    return TRUE;
}

/* One flat tensor for all parameters, one for their gradients; each layer's parameters become
 * views into them at PARAM_ALIGN_ELEMS-aligned offsets. */
static gboolean flatten_params(LmnModel *m, GError **error)
{
    gint64 total = 0;
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        LmnLayer *l = node_at(m, i)->layer;
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            gint64 numel = lmn_tensor_numel(lmn_layer_get_param(l, p));
            m->n_parameters += numel;
            total += align_up(numel);
        }
    }
    LmnShape flat = lmn_shape_make(1, MAX(total, (gint64) PARAM_ALIGN_ELEMS));
    m->params = lmn_tensor_new(m->backend, LMN_DTYPE_F32, &flat, error);
    if (!m->params)
        return FALSE;
    m->grads = lmn_tensor_new(m->backend, LMN_DTYPE_F32, &flat, error);
    if (!m->grads)
        return FALSE;
    lmn_op_fill(m->params, 0.0f);
    lmn_op_fill(m->grads, 0.0f);
    gint64 off = 0;
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        LmnLayer *l = node_at(m, i)->layer;
        node_at(m, i)->param_offset = off;
        for (guint p = 0; p < lmn_layer_get_n_params(l); p++) {
            /* A copy: binding releases the layer's own tensor, and its shape with it. */
            LmnShape shape = lmn_layer_get_param(l, p)->shape;
            g_autoptr(LmnTensor) v = lmn_tensor_new_view(m->params, off, &shape);
            g_autoptr(LmnTensor) g = lmn_tensor_new_view(m->grads, off, &shape);
            lmn_layer_bind_param(l, p, v, g);
            off += align_up(lmn_shape_numel(&shape));
        }
    }
    return TRUE;
}

LmnModel *lmn_model_new(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *backend,
                        const LmnTensorInfo *target, GError **error)
{
    g_return_val_if_fail(target != NULL, NULL);
    return lmn_model_new_full(cfg, registry, backend, target, LMN_MODEL_FLAGS_NONE, error);
}

LmnModel *lmn_model_new_full(const LmnConfig *cfg, LmnRegistry *registry, LmnBackend *backend,
                             const LmnTensorInfo *target, LmnModelFlags flags, GError **error)
{
    g_return_val_if_fail(target || (flags & LMN_MODEL_ALLOW_NO_LOSS), NULL);
    return lmn_model_new_with_targets(cfg, registry, backend, target ? 1 : 0, target, flags, error);
}

/* The losses, and the scalar of their weighted sum when it is not the one loss itself. */
static gboolean collect_losses(LmnModel *m, GError **error)
{
    m->losses = g_new0(guint, m->nodes->len);
    for (guint i = m->first_layer; i < m->nodes->len; i++)
        if (node_at(m, i)->is_loss)
            m->losses[m->n_losses++] = i;
    m->has_loss = m->n_losses > 0;
    if (m->has_loss && !m->has_target) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "%s: a loss needs targets, but the model was built without them",
                    where_of(m, m->losses[0]));
        return FALSE;
    }
    gboolean activity = FALSE;
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        const Node *n = node_at(m, i);
        activity = activity || n->activity_l1 > 0 || n->activity_l2 > 0;
        if (!m->has_loss && (n->activity_l1 > 0 || n->activity_l2 > 0)) {
            g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_INVALID,
                        "%s: activity regularisation enters the loss, but this model has no "
                        "loss layer",
                        where_of(m, i));
            return FALSE;
        }
    }
    /* The activity penalties are added to the sum, so it needs its own scalar then too. */
    if (m->n_losses > 1 || activity || (m->has_loss && node_at(m, m->losses[0])->weight != 1.0f)) {
        LmnShape one = lmn_shape_make(0);
        m->loss_total = lmn_tensor_new(m->backend, LMN_DTYPE_F32, &one, error);
        if (!m->loss_total)
            return FALSE;
        lmn_op_fill(m->loss_total, 0.0f);
    }
    return TRUE;
}

/* The config's targets beyond y need their infos: refuses a count that does not match. */
static gboolean check_target_count(const LmnConfig *cfg, guint n_targets, GError **error)
{
    guint want = lmn_config_get_n_targets(cfg);
    if (n_targets == 0 || n_targets == want)
        return TRUE;
    g_autoptr(GString) names = g_string_new(NULL);
    for (guint t = 1; t < want; t++)
        g_string_append_printf(names, "%s'%s'", t > 1 ? ", " : "",
                               lmn_config_get_target_name(cfg, t));
    g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                "%s: the losses read %u target datasets (y%s%s) but the model was given %u; "
                "build it with lmn_model_new_with_targets() and one info per target",
                lmn_config_get_name(cfg), want, want > 1 ? ", " : "", names->str, n_targets);
    return FALSE;
}

LmnModel *lmn_model_new_with_targets(const LmnConfig *cfg, LmnRegistry *registry,
                                     LmnBackend *backend, guint n_targets,
                                     const LmnTensorInfo *targets, LmnModelFlags flags,
                                     GError **error)
{
    g_return_val_if_fail(cfg && registry && backend, NULL);
    g_return_val_if_fail(n_targets == 0 || targets != NULL, NULL);
    g_return_val_if_fail(n_targets > 0 || (flags & LMN_MODEL_ALLOW_NO_LOSS), NULL);
    if (!check_target_count(cfg, n_targets, error))
        return NULL;
    LmnModel *m = g_new0(LmnModel, 1);
    m->last_training = TRUE;
    m->backend = lmn_backend_ref(backend);
    m->input_shape = *lmn_config_get_input_shape(cfg);
    m->has_target = n_targets > 0;
    m->n_targets = n_targets;
    m->target_infos = g_new0(LmnTensorInfo, MAX(n_targets, 1));
    if (n_targets > 0) {
        memcpy(m->target_infos, targets, n_targets * sizeof *targets);
        m->target = targets[0];
    }
    m->first_layer = NODE_LABELS + MAX(n_targets, 1);
    m->registry = registry;
    m->cfg = cfg;
    m->nodes = g_array_new(FALSE, TRUE, sizeof(Node));
    guint n_layers = lmn_config_get_n_layers(cfg);
    g_array_set_size(m->nodes, m->first_layer + n_layers);
    node_at(m, NODE_INPUT)->info = (LmnTensorInfo){m->input_shape, LMN_DTYPE_F32};
    node_at(m, NODE_LABELS)->info = m->target;
    for (guint t = 1; t < n_targets; t++)
        node_at(m, NODE_LABELS + t)->info = targets[t];
    for (guint i = 0; i < n_layers; i++)
        if (!build_node(m, i, error))
            goto fail;
    m->loss_node = m->first_layer + n_layers - 1;
    if (!collect_losses(m, error) || !check_consumers(m, flags, error) ||
        !flatten_params(m, error) || !plan_fusion(m, error))
        goto fail;
    return m;
fail:
    lmn_model_free(m);
    return NULL;
}

LmnModel *lmn_model_new_for_dataset(const LmnConfig *cfg, LmnRegistry *registry,
                                    LmnBackend *backend, const LmnDataset *ds, GError **error)
{
    g_return_val_if_fail(cfg && ds, NULL);
    guint n = lmn_config_get_n_targets(cfg);
    g_autofree LmnTensorInfo *infos = g_new0(LmnTensorInfo, n);
    for (guint t = 0; t < n; t++) {
        const char *name = lmn_config_get_target_name(cfg, t);
        gint k = lmn_dataset_find_target(ds, name);
        if (k < 0) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_MISSING,
                        "%s: a loss reads the target '%s', which was not read from the split "
                        "(open it with lmn_dataset_open_with_targets())",
                        lmn_dataset_get_spec(ds), name);
            return NULL;
        }
        infos[t] = lmn_dataset_get_target_info_at(ds, (guint) k);
    }
    return lmn_model_new_with_targets(cfg, registry, backend, n, infos, LMN_MODEL_FLAGS_NONE,
                                      error);
}

/* softmax_cross_entropy on per-pixel labels (float values from integer data): every value must
 * be a class of its logits [C, ...] or the layer's ignore_index, since the kernels treat any
 * other as ignored. */
static gboolean check_pixel_labels(const LmnModel *model, const LmnDataset *ds, guint loss,
                                   GError **error)
{
    gint t = lmn_model_get_loss_target(model, loss);
    const Node *n = node_at(model, model->losses[loss]);
    if (t < 0 || model->target_infos[t].dtype != LMN_DTYPE_F32 ||
        !g_str_equal(lmn_layer_get_type_name(n->layer), "softmax_cross_entropy"))
        return TRUE;
    gint k = lmn_dataset_find_target(ds, lmn_model_get_target_name(model, (guint) t));
    gint64 classes = node_at(model, n->inputs[0])->info.shape.dims[0];
    gint64 ignore = lmn_params_get_int(lmn_layer_get_params(n->layer), "ignore_index");
    return k < 0 || lmn_dataset_check_pixel_labels(ds, (guint) k, classes, ignore, error);
}

gboolean lmn_model_check_targets(const LmnModel *model, const LmnDataset *ds, GError **error)
{
    g_return_val_if_fail(model && ds, FALSE);
    for (guint t = 1; t < model->n_targets; t++) {
        const char *name = lmn_model_get_target_name(model, t);
        gint k = lmn_dataset_find_target(ds, name);
        LmnTensorInfo have = k >= 0 ? lmn_dataset_get_target_info_at(ds, (guint) k)
                                    : (LmnTensorInfo){lmn_shape_make(0), LMN_DTYPE_I32};
        const LmnTensorInfo *want = &model->target_infos[t];
        if (k < 0) {
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_MISSING,
                        "%s: the model's losses read the target '%s', which this split was not "
                        "opened with (lmn_dataset_open_with_targets())",
                        lmn_dataset_get_spec(ds), name);
            return FALSE;
        }
        if (have.dtype != want->dtype || !lmn_shape_equal(&have.shape, &want->shape)) {
            g_autofree char *hs = lmn_shape_to_string(&have.shape);
            g_autofree char *ws = lmn_shape_to_string(&want->shape);
            g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_SHAPE,
                        "%s: target '%s' is %s %s per sample but the model's is %s %s",
                        lmn_dataset_get_spec(ds), name,
                        have.dtype == LMN_DTYPE_I32 ? "class labels" : "float targets", hs,
                        want->dtype == LMN_DTYPE_I32 ? "class labels" : "float targets", ws);
            return FALSE;
        }
    }
    for (guint i = 0; i < model->n_losses; i++) {
        gint t = lmn_model_get_loss_target(model, i);
        gint k =
            t > 0 ? lmn_dataset_find_target(ds, lmn_model_get_target_name(model, (guint) t)) : -1;
        if (k > 0 && !lmn_dataset_check_target_labels(
                         ds, (guint) k, lmn_model_get_loss_n_classes(model, i), error))
            return FALSE;
        if (!check_pixel_labels(model, ds, i, error))
            return FALSE;
    }
    return TRUE;
}

gboolean lmn_model_init_params(LmnModel *model, guint64 seed, GError **error)
{
    guint first = 0;
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        LmnLayer *l = node_at(model, i)->layer;
        const LmnLayerConfig *lc = lmn_config_get_layer(model->cfg, i - model->first_layer);
        if (!lmn_layer_init_params(l, model->registry, seed, first,
                                   (const char *const *) lc->init_keys,
                                   (const char *const *) lc->init_values, lc->where, error))
            return FALSE;
        first += lmn_layer_get_n_params(l);
    }
    return TRUE;
}

/* Shared segments of the activation arena hold at most this many bytes, far below every device
 * limit on one allocation (Vulkan guarantees maxMemoryAllocationSize >= 1 GiB), while large
 * enough that a model gets one or a few of them. */
#define ARENA_SEGMENT_BYTES ((gint64) 256 << 20)

typedef enum { BUF_OUT, BUF_GRAD, BUF_EDGE, BUF_ACT } BufKind;

/* One tensor of the arena: which node's buffer it becomes, and its planned place. */
typedef struct {
    BufKind kind;
    guint node;
    guint input; /* for BUF_EDGE: the consumer's input index */
    LmnShape shape;
    LmnDType dtype;
} ArenaItem;

/* The step's timeline, as the planner sees it: time 0 is the forward pass, time 1 + k the k-th
 * layer run backward (the loss first), and the last time is after backward, when the trainer
 * reads the loss and predictions. */
static gint time_backward(const LmnModel *m, guint node)
{
    return 1 + (gint) (m->nodes->len - 1 - node);
}

static gint time_end(const LmnModel *m)
{
    return (gint) m->nodes->len;
}

static void plan_item(GArray *items, GArray *blocks, BufKind kind, guint node, guint input,
                      const LmnShape *shape, LmnDType dtype, gint first_use, gint last_use)
{
    ArenaItem it = {kind, node, input, *shape, dtype};
    LmnArenaBlock b = {
        .size = lmn_shape_numel(shape), .first_use = first_use, .last_use = last_use};
    g_array_append_val(items, it);
    g_array_append_val(blocks, b);
}

/* Lists every activation and gradient buffer with its lifetime on the timeline above.
 *
 * Forward outputs are live for the whole step: backward reads them, and the trainer reads the
 * loss and the predictions after it.  A gradient buffer is live from its first write to its
 * last read, following lmn_model_backward():
 *  - a node's grad is written by its consumers' backward passes, the first of them (in backward
 *    order) being its highest-numbered consumer, and read by its own backward pass;
 *  - with several consumers, each one writes its own edge buffer and sums it into the node's
 *    grad in the same backward pass, so the edge lives for that one time;
 *  - with one consumer, the edge is the node's grad itself (no buffer of its own).
 * A layer reads its output gradient while writing its input gradients, so both must be live at
 * that time: inclusive lifetimes that share an end point keep them apart.  Nothing carries over
 * from one step to the next: every layer overwrites its input gradients whole. */
static void list_buffers(const LmnModel *m, gint64 max_batch, GArray *items, GArray *blocks)
{
    guint n_nodes = m->nodes->len;
    g_autofree guint *last_consumer = g_new0(guint, n_nodes);
    for (guint i = m->first_layer; i < n_nodes; i++) {
        const Node *n = node_at(m, i);
        for (guint j = 0; j < n->n_inputs; j++)
            last_consumer[n->inputs[j]] = MAX(last_consumer[n->inputs[j]], i);
    }
    for (guint i = 0; i < n_nodes; i++) {
        const Node *n = node_at(m, i);
        LmnShape batched = lmn_shape_prepend(&n->info.shape, max_batch);
        if (i == NODE_LABELS && !m->has_target)
            continue;
        if (n->is_loss) {
            LmnShape one = lmn_shape_make(0);
            plan_item(items, blocks, BUF_OUT, i, 0, &one, LMN_DTYPE_F32, 0, time_end(m));
        } else if (!n->aliases_input) {
            plan_item(items, blocks, BUF_OUT, i, 0, &batched, n->info.dtype, 0, time_end(m));
        }
        /* The input of an activation whose backward its consumer computes is written then; a
         * loss's input gradient written in forward lives for the whole step (plan_fusion). */
        const Node *lc = node_at(m, last_consumer[i]);
        const guint writer = lc->grad_fused_into != 0 ? lc->grad_fused_into : last_consumer[i];
        const gboolean whole = n->n_consumers == 1 && lc->loss_grad_in_forward;
        if (n->needs_grad)
            plan_item(items, blocks, BUF_GRAD, i, 0, &batched, n->info.dtype,
                      whole ? 0 : time_backward(m, writer),
                      whole ? time_end(m) : time_backward(m, i));
        /* sign(output) for activity_l1, used while the node's gradient is completed */
        if (n->needs_grad && n->activity_l1 > 0)
            plan_item(items, blocks, BUF_ACT, i, 0, &batched, LMN_DTYPE_F32, time_backward(m, i),
                      time_backward(m, i));
    }
    for (guint i = m->first_layer; i < n_nodes; i++) {
        const Node *n = node_at(m, i);
        for (guint j = 0; j < n->n_inputs; j++) {
            const Node *src = node_at(m, n->inputs[j]);
            if (!src->needs_grad || src->n_consumers == 1)
                continue;
            LmnShape batched = lmn_shape_prepend(&src->info.shape, max_batch);
            if (n->loss_grad_in_forward)
                plan_item(items, blocks, BUF_EDGE, i, j, &batched, src->info.dtype, 0, time_end(m));
            else
                plan_item(items, blocks, BUF_EDGE, i, j, &batched, src->info.dtype,
                          time_backward(m, i), time_backward(m, i));
        }
    }
}

/* Drops every activation and gradient buffer (and so the arena, which their views hold). */
static void clear_buffers(LmnModel *m)
{
    clear_batch_views(m);
    for (guint i = 0; i < m->nodes->len; i++) {
        Node *n = node_at(m, i);
        g_clear_pointer(&n->out_full, lmn_tensor_unref);
        g_clear_pointer(&n->grad_full, lmn_tensor_unref);
        g_clear_pointer(&n->act_full, lmn_tensor_unref);
        for (guint j = 0; j < n->n_inputs; j++)
            if (n->edge_full)
                g_clear_pointer(&n->edge_full[j], lmn_tensor_unref);
    }
    m->max_batch = 0;
    m->arena_bytes = m->arena_unshared_bytes = m->arena_peak_bytes = 0;
    m->arena_segments = 0;
}

/* Gives planned buffer @it its view of the arena (@b's segment and offset). */
static void assign_buffer(LmnModel *model, const ArenaItem *it, const LmnArenaBlock *b,
                          GPtrArray *segments)
{
    LmnTensor *v =
        lmn_tensor_new_view(g_ptr_array_index(segments, b->segment), b->offset, &it->shape);
    /* Segments are f32; an i32 buffer (class labels) reinterprets its bytes, which only works
     * because both dtypes have the same size. */
    G_STATIC_ASSERT(sizeof(gint32) == sizeof(float));
    v->dtype = it->dtype;
    Node *n = node_at(model, it->node);
    switch (it->kind) {
    case BUF_OUT:
        n->out_full = v;
        break;
    case BUF_GRAD:
        n->grad_full = v;
        break;
    case BUF_EDGE:
        n->edge_full[it->input] = v;
        break;
    case BUF_ACT:
        n->act_full = v;
        break;
    }
}

gboolean lmn_model_prepare(LmnModel *model, gint64 max_batch, GError **error)
{
    g_return_val_if_fail(max_batch > 0, FALSE);
    if (max_batch <= model->max_batch)
        return lmn_model_plan_batch(model, max_batch, error);
    clear_buffers(model);

    /* One plan for all buffers, then one allocation per segment and a view per buffer: a step
     * reuses the memory of gradients that are dead for the ones born after them. */
    g_autoptr(GArray) items = g_array_new(FALSE, FALSE, sizeof(ArenaItem));
    g_autoptr(GArray) blocks = g_array_new(FALSE, FALSE, sizeof(LmnArenaBlock));
    list_buffers(model, max_batch, items, blocks);
    LmnArenaPlan plan;
    lmn_arena_plan((LmnArenaBlock *) (gpointer) blocks->data, blocks->len,
                   ARENA_SEGMENT_BYTES / (gint64) sizeof(float), &plan);
    g_autoptr(GPtrArray) segments =
        g_ptr_array_new_full(plan.segment_sizes->len, (GDestroyNotify) lmn_tensor_unref);
    for (guint s = 0; s < plan.segment_sizes->len; s++) {
        gint64 size = g_array_index(plan.segment_sizes, gint64, s);
        LmnShape flat = lmn_shape_make(1, MAX(size, (gint64) LMN_ARENA_ALIGN_ELEMS));
        LmnTensor *seg = lmn_tensor_new(model->backend, LMN_DTYPE_F32, &flat, error);
        if (!seg) {
            lmn_arena_plan_clear(&plan);
            return FALSE;
        }
        g_ptr_array_add(segments, seg);
    }

    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        if (!n->edge_full) {
            n->edge_full = g_new0(LmnTensor *, n->n_inputs);
            n->edge = g_new0(LmnTensor *, n->n_inputs);
        }
    }
    for (guint k = 0; k < items->len; k++)
        assign_buffer(model, &g_array_index(items, ArenaItem, k),
                      &g_array_index(blocks, LmnArenaBlock, k), segments);
    /* In node order, so a reshape of a reshape finds its input's view made. */
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        if (!n->aliases_input)
            continue;
        const LmnShape batched = lmn_shape_prepend(&n->info.shape, max_batch);
        n->out_full = lmn_tensor_new_view(node_at(model, n->inputs[0])->out_full, 0, &batched);
    }
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        for (guint j = 0; j < n->n_inputs; j++) {
            Node *src = node_at(model, n->inputs[j]);
            if (src->needs_grad && src->n_consumers == 1)
                n->edge_full[j] = lmn_tensor_ref(src->grad_full);
        }
    }
    model->arena_bytes = plan.total * (gint64) sizeof(float);
    model->arena_unshared_bytes = plan.unshared * (gint64) sizeof(float);
    model->arena_peak_bytes = plan.peak_live * (gint64) sizeof(float);
    model->arena_segments = plan.segment_sizes->len;
    lmn_arena_plan_clear(&plan);

    for (guint i = model->first_layer; i < model->nodes->len; i++)
        if (!lmn_layer_prepare_batch(node_at(model, i)->layer, max_batch, error)) {
            clear_buffers(model);
            return FALSE;
        }
    model->max_batch = max_batch;
    if (!lmn_model_plan_batch(model, max_batch, error)) {
        clear_buffers(model);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_model_plan_batch(LmnModel *model, gint64 batch, GError **error)
{
    g_return_val_if_fail(model != NULL, FALSE);
    g_return_val_if_fail(batch >= 1 && batch <= model->max_batch, FALSE);
    for (guint i = model->first_layer; i < model->nodes->len; i++)
        if (!lmn_layer_plan_batch(node_at(model, i)->layer, batch, error))
            return FALSE;
    return TRUE;
}

static LmnTensor *batch_view(LmnTensor *full, gint64 batch)
{
    LmnShape s = full->shape;
    s.dims[0] = batch;
    return lmn_tensor_new_view(full, 0, &s);
}

void lmn_model_set_batch(LmnModel *model, gint64 batch, LmnTensor **x_out, LmnTensor **y_out)
{
    g_return_if_fail(batch > 0 && batch <= model->max_batch);
    if (batch != model->batch) {
        clear_batch_views(model);
        for (guint i = 0; i < model->nodes->len; i++) {
            Node *n = node_at(model, i);
            if (!n->out_full)
                continue; /* the labels of a model without targets */
            n->out = n->is_loss ? lmn_tensor_ref(n->out_full) : batch_view(n->out_full, batch);
            if (n->grad_full)
                n->grad = batch_view(n->grad_full, batch);
            if (n->act_full)
                n->act = batch_view(n->act_full, batch);
        }
        for (guint i = model->first_layer; i < model->nodes->len; i++) {
            Node *n = node_at(model, i);
            /* Within the prepared maximum this only makes views: it cannot fail. */
            gboolean ok = lmn_layer_prepare_batch(n->layer, batch, NULL);
            g_assert(ok);
            for (guint j = 0; j < n->n_inputs; j++)
                if (n->edge_full[j])
                    n->edge[j] = n->edge_full[j] == node_at(model, n->inputs[j])->grad_full
                                     ? lmn_tensor_ref(node_at(model, n->inputs[j])->grad)
                                     : batch_view(n->edge_full[j], batch);
        }
        model->batch = batch;
    }
    if (x_out)
        *x_out = node_at(model, NODE_INPUT)->out;
    if (y_out)
        *y_out = node_at(model, NODE_LABELS)->out;
}

static void fill_io(LmnModel *model, Node *n, LmnTensor **ins, LmnLayerIO *io, gboolean training,
                    guint64 step, guint64 seed)
{
    for (guint j = 0; j < n->n_inputs; j++)
        ins[j] = node_at(model, n->inputs[j])->out;
    memset(io, 0, sizeof(*io));
    io->struct_size = sizeof(*io);
    io->n_inputs = n->n_inputs;
    io->inputs = ins;
    io->output = n->out;
    io->batch = model->batch;
    io->training = training;
    io->step = step;
    io->seed = seed;
}

/* Points @io at node @i's fusion, if any, with the fused node's output of this batch. */
static void set_fusion(LmnModel *model, guint i, LmnLayerFusion *fusion, LmnLayerIO *io)
{
    const Node *n = node_at(model, i);
    if (!n->has_fusion)
        return;
    *fusion = n->fusion;
    fusion->output = node_at(model, i + 1)->out;
    io->fusion = fusion;
}

/* Activity regularisation, a training loss term like the weight penalties (evaluation losses
 * leave it out): activity_l1 * sum |a| + activity_l2 * sum a^2 per layer output a, over the
 * batch and divided by its size, as Keras' activity_regularizer. */
static void add_activity_penalties(LmnModel *model)
{
    float per_sample = 1.0f / (float) model->batch;
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        const Node *n = node_at(model, i);
        if (n->activity_l1 > 0)
            lmn_op_reduce(LMN_REDUCE_SUM_ABS, n->out, model->loss_total,
                          n->activity_l1 * per_sample, 1.0f);
        if (n->activity_l2 > 0)
            lmn_op_reduce(LMN_REDUCE_SUM_SQUARES, n->out, model->loss_total,
                          n->activity_l2 * per_sample, 1.0f);
    }
}

/* The activity penalties' gradient, added to the node's output gradient once its consumers
 * have written it: activity_l1 sign(a) + 2 activity_l2 a, over the batch size. */
static void add_activity_grads(LmnModel *model, Node *n)
{
    if (!model->last_training || !n->grad)
        return;
    float per_sample = 1.0f / (float) model->batch;
    if (n->activity_l2 > 0)
        lmn_op_axpby(2.0f * n->activity_l2 * per_sample, n->out, 1.0f, n->grad);
    if (n->activity_l1 > 0) {
        lmn_op_unary(LMN_UNARY_SIGN, n->out, n->act, 0.0f);
        lmn_op_axpby(n->activity_l1 * per_sample, n->act, 1.0f, n->grad);
    }
}

void lmn_model_forward(LmnModel *model, gboolean training, guint64 step, guint64 seed)
{
    g_return_if_fail(model->batch > 0);
    LmnTensor *ins[16];
    LmnLayerIO io;
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        if (n->fused_forward)
            continue;
        fill_io(model, n, ins, &io, training, step, seed);
        LmnLayerFusion fusion;
        set_fusion(model, i, &fusion, &io);
        n->loss_grad_ready = training && n->loss_grad_in_forward && n->edge != NULL;
        if (n->loss_grad_ready)
            io.input_grads = n->edge;
        lmn_layer_forward(n->layer, &io);
    }
    /* In file order, so the sum rounds the same way on every backend and every run. */
    for (guint k = 0; model->loss_total && k < model->n_losses; k++) {
        const Node *n = node_at(model, model->losses[k]);
        lmn_op_axpby(n->weight, n->out, k == 0 ? 0.0f : 1.0f, model->loss_total);
    }
    if (training)
        add_activity_penalties(model);
    model->last_training = training;
}

void lmn_model_forward_inference(LmnModel *model)
{
    g_return_if_fail(model != NULL && model->batch > 0);
    LmnTensor *ins[16];
    LmnLayerIO io;
    /* A loss feeds no layer, so skipping every loss leaves each prediction complete; the
     * targets are never read, so the caller need not fill them. */
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        n->loss_grad_ready = FALSE;
        if (n->is_loss || n->fused_forward)
            continue;
        fill_io(model, n, ins, &io, FALSE, 0, 0);
        LmnLayerFusion fusion;
        set_fusion(model, i, &fusion, &io);
        lmn_layer_forward(n->layer, &io);
    }
    model->last_training = FALSE;
}

/* Backward seeds a loss with its weight: the loss layer computes d(loss)/d(inputs) (its output
 * gradient is implicitly 1), so the input gradients it wrote are scaled by the weight, which
 * equals seeding with the weight.  A weight of 1 is left alone, so single-loss models run the
 * same ops as always. */
static void scale_loss_grads(Node *n)
{
    if (n->weight == 1.0f)
        return;
    for (guint j = 0; j < n->n_inputs; j++)
        if (n->edge[j])
            lmn_op_axpby(n->weight, n->edge[j], 0.0f, n->edge[j]);
}

/* Backward through every layer that runs; @output_grad is the last layer's (NULL for a loss).
 * With @input_only, only the layers between the input and the losses run, and none is asked for
 * its parameters' gradients. */
typedef enum {
    BACKWARD_ALL = 0,
    BACKWARD_INPUT_ONLY = 1,  /* only dL/d(input): no parameter gradients */
    BACKWARD_PARAMS_ONLY = 2, /* no dL/d(input), even when input gradients are on */
} BackwardMode;

static void run_backward(LmnModel *model, LmnTensor *output_grad, guint64 step, guint64 seed,
                         BackwardMode mode)
{
    LmnTensor *ins[16], *edges[16];
    LmnLayerIO io;
    gboolean input_only = mode == BACKWARD_INPUT_ONLY;
    /* From the input node on: with input gradients on it collects its consumers' edges too. */
    for (guint i = 0; i < model->nodes->len; i++)
        node_at(model, i)->grad_written = FALSE;
    /* The hook sees the gradients of a plain backward, which overwrites them; backward_from()
     * adds earlier gradients back afterwards, so its values are final only at its end. */
    LmnModelBackwardHook hook = input_only || output_grad ? NULL : model->backward_hook;
    for (guint i = model->nodes->len; i-- > model->first_layer;) {
        Node *n = node_at(model, i);
        if (hook && i + 1 < model->nodes->len)
            hook(model, node_at(model, i + 1)->param_offset, model->backward_hook_data);
        if (!n->runs_backward || (input_only && !n->reads_input) || n->grad_fused_into != 0)
            continue;
        fill_io(model, n, ins, &io, model->last_training, step, seed);
        io.output_grad = n->is_loss ? NULL : i == model->loss_node ? output_grad : n->grad;
        io.input_grads = n->edge;
        if (mode == BACKWARD_PARAMS_ONLY && n->reads_input) {
            /* the input's own gradient is not asked for (layers in between still are) */
            for (guint j = 0; j < n->n_inputs; j++)
                edges[j] = n->inputs[j] == NODE_INPUT ? NULL : n->edge[j];
            io.input_grads = edges;
        }
        LmnLayerFusion grad_fusion;
        if (n->grad_fusion_of != 0 && io.input_grads[0] != NULL) {
            /* The activation before this layer: its input gradient, written here (see
             * plan_fusion), is its one edge, or nothing in a pass that skips the input's. */
            const Node *a = node_at(model, n->grad_fusion_of);
            const gboolean skip = mode == BACKWARD_PARAMS_ONLY && a->inputs[0] == NODE_INPUT;
            edges[0] = skip ? NULL : a->edge[0];
            io.input_grads = edges;
            grad_fusion = n->grad_fusion;
            grad_fusion.input = node_at(model, a->inputs[0])->out;
            io.fusion = edges[0] != NULL ? &grad_fusion : NULL;
        }
        io.skip_param_grads = input_only || n->frozen;
        if (n->activity_l1 > 0 || n->activity_l2 > 0)
            add_activity_grads(model, n);
        /* A loss whose last forward wrote its input gradients has nothing left to do but the
         * fan-out below. */
        if (!n->loss_grad_ready)
            lmn_layer_backward(n->layer, &io);
        if (n->is_loss)
            scale_loss_grads(n);
        /* A frozen layer runs only for the layers below it; the gradient of its own parameters
         * stays 0, as if never computed, so clipping and the gradient's norm leave it out (a
         * layer may compute it even when told to skip it). */
        for (guint p = 0; !input_only && n->frozen && p < lmn_layer_get_n_params(n->layer); p++)
            lmn_op_fill(lmn_layer_get_grad(n->layer, p), 0.0f);
        for (guint j = 0; j < n->n_inputs; j++) {
            Node *src = node_at(model, n->inputs[j]);
            if (!io.input_grads[j] || src->n_consumers == 1)
                continue;
            /* Fan-out: the first consumer (in backward order) copies, later ones add. */
            if (!src->grad_written)
                lmn_op_copy(src->grad, n->edge[j]);
            else
                lmn_op_axpby(1.0f, n->edge[j], 1.0f, src->grad);
            src->grad_written = TRUE;
        }
    }
    if (hook)
        hook(model, 0, model->backward_hook_data);
}

void lmn_model_set_backward_hook(LmnModel *model, LmnModelBackwardHook hook, gpointer data)
{
    model->backward_hook = hook;
    model->backward_hook_data = data;
}

void lmn_model_set_collective(LmnModel *model, const LmnCollective *collective)
{
    g_return_if_fail(model != NULL);
    for (guint i = 0; i < model->nodes->len; i++) {
        Node *n = node_at(model, i);
        if (n->layer)
            lmn_layer_set_collective(n->layer, collective);
    }
}

void lmn_model_backward(LmnModel *model, guint64 step, guint64 seed)
{
    g_return_if_fail(model->batch > 0);
    g_return_if_fail(model->has_loss);
    run_backward(model, NULL, step, seed, BACKWARD_ALL);
}

void lmn_model_backward_params(LmnModel *model, guint64 step, guint64 seed)
{
    g_return_if_fail(model->batch > 0);
    g_return_if_fail(model->has_loss);
    run_backward(model, NULL, step, seed, BACKWARD_PARAMS_ONLY);
}

void lmn_model_backward_input(LmnModel *model, guint64 step, guint64 seed)
{
    g_return_if_fail(model->batch > 0);
    g_return_if_fail(model->has_loss);
    g_return_if_fail(model->input_grad);
    run_backward(model, NULL, step, seed, BACKWARD_INPUT_ONLY);
}

gboolean lmn_model_backward_from(LmnModel *model, const LmnTensor *output_grad, guint64 step,
                                 guint64 seed, GError **error)
{
    g_return_val_if_fail(model != NULL && output_grad != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    g_return_val_if_fail(model->batch > 0, FALSE);
    if (model->has_loss) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "the model ends in a loss: its backward starts from the loss "
                    "(lmn_model_backward), not from an output gradient");
        return FALSE;
    }
    const LmnTensor *out = node_at(model, model->loss_node)->out;
    if (!lmn_shape_equal(&output_grad->shape, &out->shape) || output_grad->dtype != LMN_DTYPE_F32 ||
        output_grad->backend != model->backend) {
        g_autofree char *want = lmn_shape_to_string(&out->shape);
        g_autofree char *got = lmn_shape_to_string(&output_grad->shape);
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "the output gradient must be an f32 tensor %s on the model's backend (the "
                    "output for the current batch), not %s %s%s",
                    want, lmn_dtype_name(output_grad->dtype), got,
                    output_grad->backend != model->backend ? " on another backend" : "");
        return FALSE;
    }
    if (!model->grads_saved) {
        model->grads_saved =
            lmn_tensor_new(model->backend, LMN_DTYPE_F32, &model->grads->shape, error);
        if (!model->grads_saved)
            return FALSE;
    }
    /* The layers overwrite their parameter gradients; adding back what was there makes the
     * call accumulate, like PyTorch's backward. */
    lmn_op_copy(model->grads_saved, model->grads);
    /* Layers only read their output gradient, whatever the LmnLayerIO field's constness. */
    run_backward(model, (LmnTensor *) output_grad, step, seed, BACKWARD_ALL);
    lmn_op_axpby(1.0f, model->grads_saved, 1.0f, model->grads);
    return TRUE;
}

void lmn_model_zero_grads(LmnModel *model)
{
    g_return_if_fail(model != NULL);
    lmn_op_fill(model->grads, 0.0f);
}

LmnTensor *lmn_model_get_output(LmnModel *model)
{
    g_return_val_if_fail(model != NULL, NULL);
    return node_at(model, model->loss_node)->out;
}

gboolean lmn_model_has_loss(const LmnModel *model)
{
    g_return_val_if_fail(model != NULL, FALSE);
    return model->has_loss;
}

/* The first layer reading the model's input as indices (an embedding's token ids), or NULL:
 * integers have no gradient, so such a model cannot give one for its input. */
static const LmnLayer *index_reader_of_input(const LmnModel *m)
{
    for (guint i = m->first_layer; i < m->nodes->len; i++) {
        const Node *n = node_at(m, i);
        for (guint j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] == NODE_INPUT && lmn_layer_get_index_limit(n->layer, j) > 0)
                return n->layer;
    }
    return NULL;
}

gboolean lmn_model_set_input_grad(LmnModel *model, gboolean enabled, GError **error)
{
    g_return_val_if_fail(model != NULL, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    enabled = !!enabled;
    if (enabled == model->input_grad)
        return TRUE;
    const LmnLayer *reader = enabled ? index_reader_of_input(model) : NULL;
    if (reader != NULL) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "layer '%s' (%s) reads the model input as indices, which have no gradient: "
                    "input gradients need a model whose input is read only as real values",
                    lmn_layer_get_name(reader), lmn_layer_get_type_name(reader));
        return FALSE;
    }
    model->input_grad = enabled;
    node_at(model, NODE_INPUT)->needs_grad = enabled;
    plan_backward(model);
    /* A prepared model re-plans its arena for the same largest batch, with or without the
     * input's gradient buffer (and the fan-out edges that feed it). */
    gint64 max_batch = model->max_batch;
    if (max_batch == 0)
        return TRUE;
    clear_buffers(model);
    if (!lmn_model_prepare(model, max_batch, error)) {
        model->input_grad = !enabled;
        node_at(model, NODE_INPUT)->needs_grad = !enabled;
        plan_backward(model);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_model_get_input_grad_enabled(const LmnModel *model)
{
    g_return_val_if_fail(model != NULL, FALSE);
    return model->input_grad;
}

LmnTensor *lmn_model_get_input_grad(LmnModel *model)
{
    g_return_val_if_fail(model != NULL, NULL);
    return model->input_grad ? node_at(model, NODE_INPUT)->grad : NULL;
}

LmnTensor *lmn_model_get_loss(LmnModel *model)
{
    if (!model->has_loss)
        return NULL;
    if (model->loss_total)
        return model->loss_total;
    return node_at(model, model->losses[0])->out;
}

LmnTensor *lmn_model_get_prediction(LmnModel *model)
{
    return model->has_loss ? lmn_model_get_loss_prediction(model, 0) : NULL;
}

guint lmn_model_get_n_losses(const LmnModel *model)
{
    g_return_val_if_fail(model != NULL, 0);
    return model->n_losses;
}

LmnLayer *lmn_model_get_loss_layer(LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, NULL);
    return node_at(model, model->losses[index])->layer;
}

double lmn_model_get_loss_weight(const LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, 0.0);
    return node_at(model, model->losses[index])->weight;
}

LmnTensor *lmn_model_get_loss_value(LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, NULL);
    return node_at(model, model->losses[index])->out;
}

LmnTensor *lmn_model_get_loss_prediction(LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, NULL);
    const Node *loss = node_at(model, model->losses[index]);
    return node_at(model, loss->inputs[0])->out;
}

/* The target node a loss reads: its last input, when that is a data node. */
static gint loss_target_node(const LmnModel *model, guint index)
{
    const Node *loss = node_at(model, model->losses[index]);
    guint last = loss->inputs[loss->n_inputs - 1];
    return last >= NODE_LABELS && last < model->first_layer ? (gint) last : -1;
}

gint lmn_model_get_loss_target(const LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, -1);
    gint node = loss_target_node(model, index);
    return node < 0 ? -1 : node - NODE_LABELS;
}

const LmnTensorInfo *lmn_model_get_loss_prediction_info(const LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, NULL);
    return &node_at(model, node_at(model, model->losses[index])->inputs[0])->info;
}

gint64 lmn_model_get_loss_n_classes(const LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_losses, -1);
    gint node = loss_target_node(model, index);
    if (node < 0 || node_at(model, (guint) node)->info.dtype != LMN_DTYPE_I32)
        return -1;
    const Node *loss = node_at(model, model->losses[index]);
    const LmnTensorInfo *pred = &node_at(model, loss->inputs[0])->info;
    return pred->shape.ndim == 0 ? -1 : pred->shape.dims[pred->shape.ndim - 1];
}

guint lmn_model_get_n_targets(const LmnModel *model)
{
    g_return_val_if_fail(model != NULL, 0);
    return model->n_targets;
}

const char *lmn_model_get_target_name(const LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_targets, NULL);
    return lmn_config_get_target_name(model->cfg, index);
}

const LmnTensorInfo *lmn_model_get_target_info_at(const LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_targets, NULL);
    return &model->target_infos[index];
}

LmnTensor *lmn_model_get_target(LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL && index < model->n_targets, NULL);
    return node_at(model, NODE_LABELS + index)->out;
}

LmnTensor *lmn_model_get_params(LmnModel *model)
{
    return model->params;
}

LmnTensor *lmn_model_get_grads(LmnModel *model)
{
    return model->grads;
}

guint lmn_model_get_n_layers(const LmnModel *model)
{
    return model->nodes->len - model->first_layer;
}

LmnLayer *lmn_model_get_layer(LmnModel *model, guint index)
{
    g_return_val_if_fail(index + model->first_layer < model->nodes->len, NULL);
    return node_at(model, model->first_layer + index)->layer;
}

const LmnShape *lmn_model_get_input_shape(const LmnModel *model)
{
    return &model->input_shape;
}

const LmnTensorInfo *lmn_model_get_target_info(const LmnModel *model)
{
    return model->has_target ? &model->target : NULL;
}

/* Checks @n samples of @x (@numel values each) against @l, which takes indices in
 * [0, @limit); @indices (nullable) names the samples in their dataset. */
static gboolean check_indices(const LmnLayer *l, const float *x, gint64 n, gint64 numel,
                              const guint32 *indices, gint64 limit, GError **error)
{
    for (gint64 i = 0; i < n * numel; i++) {
        float v = x[i];
        if (v >= 0 && v < (double) limit && v == floorf(v)) {
            continue;
        }
        gint64 item = i / numel;
        g_set_error(error, LMN_DATA_ERROR, LMN_DATA_ERROR_VALUE,
                    "sample %" G_GINT64_FORMAT " (item %" G_GINT64_FORMAT " of the batch) holds "
                    "%.9g at element %" G_GINT64_FORMAT ", but layer '%s' (%s) reads its input "
                    "as indices: whole numbers 0..%" G_GINT64_FORMAT
                    " (num_embeddings = %" G_GINT64_FORMAT
                    "); store the token ids as integers below num_embeddings "
                    "(without scale, mean or std) or raise num_embeddings",
                    indices != NULL ? (gint64) indices[item] : item, item, (double) v, i % numel,
                    lmn_layer_get_name(l), lmn_layer_get_type_name(l), limit - 1, limit);
        return FALSE;
    }
    return TRUE;
}

gboolean lmn_model_check_input(const LmnModel *model, const float *x, gint64 n,
                               const guint32 *indices, GError **error)
{
    g_return_val_if_fail(model != NULL && (x != NULL || n == 0), FALSE);
    gint64 numel = lmn_shape_numel(&model->input_shape);
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        const Node *node = node_at(model, i);
        for (guint j = 0; j < node->n_inputs; j++) {
            gint64 limit = lmn_layer_get_index_limit(node->layer, j);
            if (node->inputs[j] == NODE_INPUT && limit > 0 &&
                !check_indices(node->layer, x, n, numel, indices, limit, error)) {
                return FALSE;
            }
        }
    }
    return TRUE;
}

gint64 lmn_model_get_n_classes(const LmnModel *model)
{
    if (!model->has_loss || model->target.dtype != LMN_DTYPE_I32)
        return -1;
    /* The first loss reading y, which y's labels must fit. */
    guint k = 0;
    while (k + 1 < model->n_losses && loss_target_node(model, k) != NODE_LABELS)
        k++;
    const Node *loss = node_at(model, model->losses[k]);
    const LmnTensorInfo *pred = &node_at(model, loss->inputs[0])->info;
    if (pred->shape.ndim == 0)
        return -1;
    return pred->shape.dims[pred->shape.ndim - 1];
}

gint64 lmn_model_get_n_parameters(const LmnModel *model)
{
    return model->n_parameters;
}

gint64 lmn_model_get_activation_bytes(const LmnModel *model, gint64 *unshared_out, gint64 *peak_out,
                                      guint *n_segments_out)
{
    g_return_val_if_fail(model != NULL, 0);
    if (unshared_out)
        *unshared_out = model->arena_unshared_bytes;
    if (peak_out)
        *peak_out = model->arena_peak_bytes;
    if (n_segments_out)
        *n_segments_out = model->arena_segments;
    return model->arena_bytes;
}

LmnBackend *lmn_model_get_backend(const LmnModel *model)
{
    return model->backend;
}

LmnTensor *lmn_model_get_layer_output(LmnModel *model, guint index)
{
    g_return_val_if_fail(model != NULL, NULL);
    g_return_val_if_fail(index + model->first_layer < model->nodes->len, NULL);
    return node_at(model, model->first_layer + index)->out;
}

/* ---- LSUV ---- */

static int compare_u32(const void *a, const void *b)
{
    guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;
    return (x > y) - (x < y);
}

/* Puts the first @batch samples of a Philox permutation of @ds into the input and target
 * tensors.  They are read in file order: the order inside the batch does not change a
 * variance, and sorted indices make the reads sequential. */
static gboolean lsuv_load_batch(LmnModel *m, const LmnDataset *ds, gint64 batch, guint64 seed,
                                GError **error)
{
    gint64 n = lmn_dataset_get_length(ds);
    g_autofree guint32 *order = g_new(guint32, n);
    for (gint64 i = 0; i < n; i++)
        order[i] = (guint32) i;
    LmnRandom r;
    lmn_random_init(&r, seed, LMN_STREAM(LMN_STREAM_INIT, G_MAXUINT32));
    lmn_random_shuffle(&r, order, (gsize) n);
    qsort(order, (size_t) batch, sizeof *order, compare_u32);

    if (!lmn_model_prepare(m, batch, error))
        return FALSE;
    LmnTensor *x, *y;
    lmn_model_set_batch(m, batch, &x, &y);
    g_autofree float *xh = g_malloc(lmn_tensor_nbytes(x));
    g_autofree void *yh = g_malloc(lmn_tensor_nbytes(y));
    if (!lmn_dataset_read(ds, order, (gsize) batch, xh, yh, error) ||
        !lmn_model_check_input(m, xh, batch, order, error))
        return FALSE;
    /* The other targets too: a loss must never read unset class labels. */
    for (guint t = 1; t < m->n_targets; t++) {
        gint k = lmn_dataset_find_target(ds, lmn_model_get_target_name(m, t));
        LmnTensor *tt = lmn_model_get_target(m, t);
        if (k < 0) {
            lmn_op_fill(tt, 0.0f);
            continue;
        }
        g_autofree void **dst = g_new0(void *, lmn_dataset_get_n_targets(ds));
        g_autofree void *th = g_malloc(lmn_tensor_nbytes(tt));
        dst[k] = th;
        if (!lmn_dataset_read_targets(ds, order, (gsize) batch, NULL, dst, error) ||
            !lmn_tensor_write(tt, th, lmn_tensor_nbytes(tt), error))
            return FALSE;
    }
    return lmn_tensor_write(x, xh, lmn_tensor_nbytes(x), error) &&
           lmn_tensor_write(y, yh, lmn_tensor_nbytes(y), error);
}

/* The index of @l's parameter "weight" when it has two or more dimensions, else -1. */
static gint lsuv_weight_index(LmnLayer *l)
{
    for (guint p = 0; p < lmn_layer_get_n_params(l); p++)
        if (g_str_equal(lmn_layer_get_param_name(l, p), "weight") &&
            lmn_layer_get_param(l, p)->shape.ndim >= 2)
            return (gint) p;
    return -1;
}

/* Re-initialises the weight of layer @i with "orthogonal" through the registry, from the same
 * Philox stream lmn_model_init_params uses for it.  lmn_layer_init_params fills every parameter,
 * so the others are saved first and written back: LSUV keeps biases as they were. */
static gboolean lsuv_orthogonal(LmnModel *m, guint i, guint first, guint64 seed, GError **error)
{
    LmnLayer *l = node_at(m, i)->layer;
    guint n = lmn_layer_get_n_params(l);
    gint w = lsuv_weight_index(l);
    g_autoptr(GPtrArray) saved = g_ptr_array_new_full(n, g_free);
    for (guint p = 0; p < n; p++) {
        float *data = NULL;
        if ((gint) p != w) {
            LmnTensor *t = lmn_layer_get_param(l, p);
            data = g_malloc(lmn_tensor_nbytes(t));
            if (!lmn_tensor_read(t, data, lmn_tensor_nbytes(t), error)) {
                g_free(data);
                return FALSE;
            }
        }
        g_ptr_array_add(saved, data);
    }
    const LmnLayerConfig *lc = lmn_config_get_layer(m->cfg, i - m->first_layer);
    const char *const keys[] = {"weight_init", NULL};
    const char *const values[] = {"orthogonal", NULL};
    if (!lmn_layer_init_params(l, m->registry, seed, first, keys, values, lc->where, error))
        return FALSE;
    for (guint p = 0; p < n; p++) {
        LmnTensor *t = lmn_layer_get_param(l, p);
        if ((gint) p != w &&
            !lmn_tensor_write(t, g_ptr_array_index(saved, p), lmn_tensor_nbytes(t), error))
            return FALSE;
    }
    return TRUE;
}

/* The population variance of every element of @t (f32), accumulated in double. */
static gboolean lsuv_variance(LmnTensor *t, double *var_out, GError **error)
{
    gint64 numel = lmn_tensor_numel(t);
    g_autofree float *h = g_new(float, MAX(numel, 1));
    if (!lmn_tensor_read(t, h, (gsize) numel * sizeof(float), error))
        return FALSE;
    double mean = 0, var = 0;
    for (gint64 k = 0; k < numel; k++)
        mean += h[k];
    mean /= (double) MAX(numel, 1);
    for (gint64 k = 0; k < numel; k++)
        var += (h[k] - mean) * (h[k] - mean);
    *var_out = var / (double) MAX(numel, 1);
    return TRUE;
}

gboolean lmn_model_lsuv(LmnModel *model, const LmnDataset *ds, gint64 batch, double tol,
                        gint max_iter, guint64 seed, GError **error)
{
    g_return_val_if_fail(model != NULL && ds != NULL, FALSE);
    g_return_val_if_fail(batch > 0 && tol > 0 && max_iter >= 0, FALSE);
    g_return_val_if_fail(error == NULL || *error == NULL, FALSE);
    /* The batch fills the targets, and the final forward flushes through the loss. */
    if (!model->has_loss) {
        g_set_error(error, LMN_CONFIG_ERROR, LMN_CONFIG_ERROR_GRAPH,
                    "LSUV initialisation needs a model that ends in a loss");
        return FALSE;
    }

    gint64 n = lmn_dataset_get_length(ds);
    if (n <= 0) {
        g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                    "%s: LSUV initialisation needs at least one sample", lmn_dataset_get_spec(ds));
        return FALSE;
    }
    if (!lmn_dataset_check_model(ds, &model->input_shape, lmn_model_get_n_classes(model), error))
        return FALSE;
    batch = MIN(batch, n);

    /* Orthogonal weights everywhere first: a layer's output depends only on the layers before
     * it, so this equals re-initialising each layer just before it is scaled. */
    guint first = 0;
    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        LmnLayer *l = node_at(model, i)->layer;
        if (lsuv_weight_index(l) >= 0 && !lsuv_orthogonal(model, i, first, seed, error))
            return FALSE;
        first += lmn_layer_get_n_params(l);
    }
    if (!lsuv_load_batch(model, ds, batch, seed, error))
        return FALSE;

    for (guint i = model->first_layer; i < model->nodes->len; i++) {
        LmnLayer *l = node_at(model, i)->layer;
        gint w = lsuv_weight_index(l);
        if (w < 0)
            continue;
        LmnTensor *weight = lmn_layer_get_param(l, (guint) w);
        for (gint it = 0; it < max_iter; it++) {
            lmn_model_forward(model, FALSE, 0, seed);
            double var;
            if (!lsuv_variance(node_at(model, i)->out, &var, error))
                return FALSE;
            if (!isfinite(var)) {
                g_set_error(error, LMN_TRAIN_ERROR, LMN_TRAIN_ERROR_FAILED,
                            "%s: LSUV initialisation: the output variance of this layer is %g "
                            "on the batch from %s",
                            lmn_config_get_layer(model->cfg, i - model->first_layer)->where, var,
                            lmn_dataset_get_spec(ds));
                return FALSE;
            }
            /* A constant output (dead units, all-zero input) cannot be scaled to variance 1. */
            if (fabs(var - 1.0) < tol || var == 0.0)
                break;
            lmn_op_axpby((float) (1.0 / sqrt(var)), weight, 0.0f, weight);
        }
    }
    /* Surfaces an error an op recorded on a device backend. */
    double unused;
    return lsuv_variance(lmn_model_get_loss(model), &unused, error);
}
