/** The one place commander is imported; entry points take Command from here. */
export { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
