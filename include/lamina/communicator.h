/* Lamina — communicators: the processes of a data-parallel run and the collectives between them.
 *
 * A communicator is a plugin feature of kind LMN_FEATURE_COMMUNICATOR.  Its vtable connects the
 * processes ("ranks") a launcher started (Open MPI's mpirun for the built-in "mpi" plugin) and
 * moves host memory between them; the core (lmn_comm_*) adds deadlines, staging of device
 * tensors through host memory and the single-process case, which needs no plugin at all.  A
 * plugin for another transport (NCCL, Gloo) implements the same members.
 *
 * Reductions are sums of float32 arrays, done in an order fixed for a given number of ranks (the
 * MPI plugin runs a ring reduce-scatter and all-gather over point-to-point messages), so a run
 * with N ranks is bit-identical when repeated with N ranks, and every rank ends with the same
 * bits.  A plugin must keep both properties.
 *
 * Progress: a non-blocking reduction moves on only inside request_test() and request_wait()
 * (the core calls request_test() between layers during backward), so a plugin needs no thread
 * of its own and the transport is only ever called from the thread that opened it.
 */
#pragma once

#include <lamina/params.h>
#include <lamina/registry.h>
#include <lamina/tensor.h>

G_BEGIN_DECLS

/** LMN_COMM_ERROR: the error domain of communicators. */
#define LMN_COMM_ERROR (lmn_comm_error_quark())
GQuark lmn_comm_error_quark(void);

/** LmnCommError: stored nowhere, but kept append-only like the other domains. */
typedef enum {
    LMN_COMM_ERROR_FAILED = 0, /* the transport reported an error (its text is in the message) */
    LMN_COMM_ERROR_TIMEOUT =
        1, /* a peer did not answer within the deadline (rank and host named) */
    LMN_COMM_ERROR_MISMATCH = 2,    /* the ranks do not run the same job (config, plugins, model) */
    LMN_COMM_ERROR_UNAVAILABLE = 3, /* no communicator of that name, or not under its launcher */
    LMN_COMM_ERROR_INVALID = 4,     /* a size or count the transport cannot carry */
} LmnCommError;

/**
 * LmnCommunicatorVTable:
 * @detect: Returns: whether this process was started by the communicator's launcher (for MPI:
 *   OMPI_COMM_WORLD_SIZE or PMIX_RANK is set); `--distributed auto` uses the first that says so
 * @open: joins the job; called once per process.  Returns: the plugin's handle, or NULL with
 *   @error
 * @close: leaves the job (after every rank has called it, for MPI: MPI_Finalize) and frees @comm
 * @rank, @size, @local_rank: this process's rank, the number of ranks, the rank among those on
 *   the same host
 * @host_name: Returns: (transfer none): the host @rank runs on (any rank, 0 <= rank < size)
 * @allreduce_start: starts summing @count floats at @data over every rank, in place; @data must
 *   stay untouched until the request completes.  Returns: a request, or NULL with @error
 * @request_test: moves @request on without blocking.  Returns: 1 when it completed (the request
 *   is then freed), 0 while it is pending, -1 with @error (the request is freed)
 * @request_wait: completes @request, waiting at most @timeout seconds; FALSE with @error
 *   (LMN_COMM_ERROR_TIMEOUT naming the rank waited for) otherwise.  The request is freed either
 *   way.
 * @broadcast: copies @nbytes at @data from rank @root to every rank, within @timeout seconds
 * @barrier: returns once every rank has entered it, within @timeout seconds
 * @abort: ends every rank of the job with exit status @code after printing @message; does not
 *   return
 */
typedef struct {
    guint32 struct_size;
    gboolean (*detect)(void);
    gpointer (*open)(const LmnParams *params, GError **error);
    void (*close)(gpointer comm);
    int (*rank)(gpointer comm);
    int (*size)(gpointer comm);
    int (*local_rank)(gpointer comm);
    const char *(*host_name)(gpointer comm, int rank);
    gpointer (*allreduce_start)(gpointer comm, float *data, gsize count, GError **error);
    int (*request_test)(gpointer comm, gpointer request, GError **error);
    gboolean (*request_wait)(gpointer comm, gpointer request, double timeout, GError **error);
    gboolean (*broadcast)(gpointer comm, void *data, gsize nbytes, int root, double timeout,
                          GError **error);
    gboolean (*barrier)(gpointer comm, double timeout, GError **error);
    void (*abort)(gpointer comm, int code, const char *message);
} LmnCommunicatorVTable;

/* ---- the core's communicator object ---- */

typedef struct _LmnComm LmnComm;
typedef struct _LmnCommRequest LmnCommRequest;

/**
 * lmn_comm_open:
 * @registry: where communicators are looked up
 * @name: a communicator's name ("mpi"), "none" for a single process, or NULL / "auto" for the
 *   first registered communicator whose detect() recognises its launcher, else a single process
 * Returns: (transfer full): the communicator, or NULL with LMN_COMM_ERROR_UNAVAILABLE (the
 *   known communicators listed) or the plugin's error
 */
LmnComm *lmn_comm_open(LmnRegistry *registry, const char *name, GError **error);
/** lmn_comm_new_single: Returns: (transfer full): a communicator of one rank (no plugin). */
LmnComm *lmn_comm_new_single(void);
/** lmn_comm_free: leaves the job (see LmnCommunicatorVTable.close); NULL is allowed. */
void lmn_comm_free(LmnComm *comm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LmnComm, lmn_comm_free)

/** lmn_comm_get_name: Returns: (transfer none): "mpi", ..., or "none" for one process. */
const char *lmn_comm_get_name(const LmnComm *comm);
/** lmn_comm_get_rank: Returns: this process's rank, 0 .. size - 1. */
int lmn_comm_get_rank(const LmnComm *comm);
/** lmn_comm_get_size: Returns: the number of ranks (1 for a single process). */
int lmn_comm_get_size(const LmnComm *comm);
/** lmn_comm_get_local_rank: Returns: the rank among those on the same host (a GPU index). */
int lmn_comm_get_local_rank(const LmnComm *comm);
/** lmn_comm_get_host_name: Returns: (transfer none): the host rank @rank runs on. */
const char *lmn_comm_get_host_name(const LmnComm *comm, int rank);

/**
 * lmn_comm_set_timeout:
 * The deadline in seconds of every wait (default 300; [train] comm_timeout): a rank that has not
 * answered by then is named in a LMN_COMM_ERROR_TIMEOUT error instead of a hang.
 */
void lmn_comm_set_timeout(LmnComm *comm, double seconds);
/** lmn_comm_get_timeout: Returns: the deadline of every wait, in seconds. */
double lmn_comm_get_timeout(const LmnComm *comm);

/** lmn_comm_allreduce: sums @count floats at @data (host memory) over every rank, in place. */
gboolean lmn_comm_allreduce(LmnComm *comm, float *data, gsize count, GError **error);
/**
 * lmn_comm_allreduce_doubles:
 * Sums @count doubles over every rank in double precision, adding them in rank order (every
 * rank broadcasts its values in turn: meant for a few figures such as loss sums, not for
 * gradients).
 */
gboolean lmn_comm_allreduce_doubles(LmnComm *comm, double *data, gsize count, GError **error);
/**
 * lmn_comm_allreduce_start:
 * Starts summing @count floats at @data in place; @data must stay untouched until
 * lmn_comm_test() or lmn_comm_wait() reports completion.  With one rank the request is complete
 * at once.  Returns: (transfer full): the request, or NULL with @error
 */
LmnCommRequest *lmn_comm_allreduce_start(LmnComm *comm, float *data, gsize count, GError **error);
/**
 * lmn_comm_test: moves @request on without blocking.
 * Returns: 1 when complete (the request is freed), 0 while pending, -1 with @error (freed)
 */
int lmn_comm_test(LmnComm *comm, LmnCommRequest *request, GError **error);
/** lmn_comm_wait: completes @request (freed either way) within the deadline; FALSE with @error. */
gboolean lmn_comm_wait(LmnComm *comm, LmnCommRequest *request, GError **error);
/** lmn_comm_broadcast: copies @nbytes at @data from rank @root to every rank. */
gboolean lmn_comm_broadcast(LmnComm *comm, void *data, gsize nbytes, int root, GError **error);
/**
 * lmn_comm_broadcast_tensor: copies @t (an f32 tensor on any backend) from rank @root to every
 * rank, staging through host memory when the backend's memory is not host memory.
 */
gboolean lmn_comm_broadcast_tensor(LmnComm *comm, LmnTensor *t, int root, GError **error);
/** lmn_comm_barrier: returns once every rank has entered it, within the deadline. */
gboolean lmn_comm_barrier(LmnComm *comm, GError **error);
/**
 * lmn_comm_check_same:
 * @what: what @value identifies ("the config, plugins and parameter count"), for the message
 * Rank 0 broadcasts @value; every rank compares it with its own and the ranks agree on the
 * outcome, so all of them stop together.  Returns: FALSE with LMN_COMM_ERROR_MISMATCH naming
 * the ranks (and hosts) that differ
 */
gboolean lmn_comm_check_same(LmnComm *comm, guint64 value, const char *what, GError **error);
/**
 * lmn_comm_abort: ends every rank of the job with exit status @code after printing @message
 * (with one rank: nothing happens and it returns).
 */
void lmn_comm_abort(LmnComm *comm, int code, const char *message);

G_END_DECLS
