/*
 * spank_qpu: a tiny stand-in for the spank_qrmi SPANK plugin, for tests only.
 *
 * It emulates the job-environment contract of spank_qrmi:
 *
 *   sbatch --qpu=name1,name2 ...
 *
 * makes every job step (including the batch script) see
 *
 *   QRMI_JOB_QPU_RESOURCES=name1,name2   SLURM_JOB_QPU_RESOURCES=name1,name2
 *   QRMI_JOB_QPU_TYPES=type1,type2       SLURM_JOB_QPU_TYPES=type1,type2
 *
 * where each type is looked up from the plugin argument in plugstack.conf:
 *
 *   required /path/spank_qpu.so types=aer_sim:qiskit-aer,sim2:vqpu
 *
 * An unknown resource name is rejected at submit time (sbatch/srun/salloc
 * print an error and exit non-zero) and, should it get that far (the
 * types changed while the job was pending), fails the job's tasks.
 * Written from spank.h / `man spank` only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slurm/spank.h>

SPANK_PLUGIN(spank_qpu, 1);

#define MAX_QPUS 32
#define MAX_LIST 4096

static char *qpu_names[MAX_QPUS]; /* from plugin argument types=... */
static char *qpu_types[MAX_QPUS];
static int n_qpus;

static char req_names[MAX_LIST];  /* value of --qpu, "" if not given */
static char req_types[MAX_LIST];  /* matching types, built by resolve() */

/* Parse "name:type,name:type" into qpu_names/qpu_types. */
static int parse_types(const char *spec)
{
	char *copy = strdup(spec), *save = NULL, *tok;

	if (!copy)
		return -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');

		if (!colon || colon == tok || !colon[1] || n_qpus == MAX_QPUS) {
			slurm_error("spank_qpu: bad types entry '%s' (want name:type)", tok);
			free(copy);
			return -1;
		}
		*colon = '\0';
		qpu_names[n_qpus] = strdup(tok);
		qpu_types[n_qpus] = strdup(colon + 1);
		n_qpus++;
	}
	free(copy);
	return 0;
}

static const char *type_of(const char *name)
{
	for (int i = 0; i < n_qpus; i++)
		if (strcmp(qpu_names[i], name) == 0)
			return qpu_types[i];
	return NULL;
}

/* Fill req_types from req_names; -1 (with a message) on an unknown name. */
static int resolve(void)
{
	char copy[MAX_LIST], *save = NULL, *tok;
	size_t used = 0;

	snprintf(copy, sizeof(copy), "%s", req_names);
	req_types[0] = '\0';
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *type = type_of(tok);
		int n;

		if (!type) {
			slurm_error("spank_qpu: unknown QPU resource '%s' in --qpu=%s",
				    tok, req_names);
			return -1;
		}
		n = snprintf(req_types + used, sizeof(req_types) - used, "%s%s",
			     used ? "," : "", type);
		if (n < 0 || (size_t) n >= sizeof(req_types) - used)
			return -1;
		used += n;
	}
	if (!used) {
		slurm_error("spank_qpu: --qpu needs at least one resource name");
		return -1;
	}
	return 0;
}

/* Called for --qpu both at submit time (remote=0) and in slurmstepd. */
static int qpu_opt_cb(int val, const char *optarg, int remote)
{
	(void) val;
	(void) remote;
	if (!optarg || strlen(optarg) >= sizeof(req_names)) {
		slurm_error("spank_qpu: --qpu value missing or too long");
		return -1;
	}
	snprintf(req_names, sizeof(req_names), "%s", optarg);
	return resolve();
}

static struct spank_option qpu_option = {
	"qpu", "names",
	"Comma-separated QPU resource names to use (test stand-in for spank_qrmi)",
	1, 0, qpu_opt_cb
};

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	for (int i = 0; i < ac; i++) {
		if (strncmp(av[i], "types=", 6) == 0) {
			if (parse_types(av[i] + 6))
				return -1;
		} else {
			slurm_error("spank_qpu: unknown plugin argument '%s'", av[i]);
			return -1;
		}
	}
	/* spank_option_register works in every context, the spank_options
	 * table does not work in sbatch/salloc. */
	if (spank_option_register(sp, &qpu_option) != ESPANK_SUCCESS)
		return -1;
	return 0;
}

/*
 * Runs in each task (the batch script is one) just before it is exec'd.
 * Not user_init: Slurm 22.05 reports a batch job whose user_init failed as
 * COMPLETED with exit code 0, while a task_init failure makes the task exit
 * with status 1, so the job ends FAILED.
 */
int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	(void) ac;
	(void) av;
	if (!spank_remote(sp) || !req_names[0])
		return 0;
	if (resolve())
		return -1;
	if (spank_setenv(sp, "QRMI_JOB_QPU_RESOURCES", req_names, 1) ||
	    spank_setenv(sp, "SLURM_JOB_QPU_RESOURCES", req_names, 1) ||
	    spank_setenv(sp, "QRMI_JOB_QPU_TYPES", req_types, 1) ||
	    spank_setenv(sp, "SLURM_JOB_QPU_TYPES", req_types, 1)) {
		slurm_error("spank_qpu: could not set job environment");
		return -1;
	}
	return 0;
}
