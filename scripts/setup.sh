# The setup train.sh, sample.sh and prepare_data.sh run, decided in one place (sourced, not run):
#   $SETUP when given: demo, custom, ImageNet or cifar;
#   else custom when the flags name your own data (--dataset, --experiment_name; for prepare_data.sh
#   a source: --idx, --torchvision, --image_folder), else demo (the default run, no downloads).
setup_of() {
  if [ -n "${SETUP:-}" ]; then
    case "$SETUP" in
      demo|custom|ImageNet|cifar) echo "$SETUP"; return ;;
      *) echo "error: SETUP must be demo, custom, ImageNet or cifar (got '$SETUP')" >&2; return 2 ;;
    esac
  fi
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dataset|--dataset=*|--experiment_name|--experiment_name=*|--idx|--idx=*|--torchvision|--torchvision=*|--image_folder|--image_folder=*)
        echo custom; return ;;
    esac
  done
  echo demo
}
